"""Measure every checkpoint of a run: per-head UAS tables and BLiMP, as tidy tables cached in the run.

``03_measure`` calls :func:`measure_runs`; results are cached under ``run_dir/measure/`` keyed by the
measurement's parameters, so re-running the notebook only scores new checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd
from tqdm.auto import tqdm

from . import blimp as blimp_lib
from . import sas
from .train import list_checkpoints, load_checkpoint, read_metrics
from .treebank import load_treebank


def _cached(path: Path, fn) -> pd.DataFrame:
    if path.exists():
        return pd.read_parquet(path)
    df = fn()
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp)
    tmp.replace(path)
    return df


def measure_run(run_dir: str | Path, treebank: str = "ewt-dev", n_sentences: int = 500,
                blimp_per_paradigm: int = 0, data_dir=None, steps: Sequence[int] | None = None,
                progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score each checkpoint of ``run_dir``.

    Returns ``(uas, blimp)``: ``uas`` has one row per (step, layer, head, direction, relation) plus
    the offset baselines (layer = -1); ``blimp`` one row per (step, paradigm) with accuracy (empty if
    ``blimp_per_paradigm`` is 0). Both carry a ``run`` column.
    """
    run_dir = Path(run_dir)
    ckpts = [(s, p) for s, p in list_checkpoints(run_dir) if steps is None or s in steps]
    if not ckpts:
        raise FileNotFoundError(f"no checkpoints in {run_dir / 'checkpoints'}")
    out_dir = run_dir / "measure"
    out_dir.mkdir(exist_ok=True)
    sents = load_treebank(treebank, data_dir)
    enc = None
    pairs = None
    uas_rows, blimp_rows = [], []
    for step, path in tqdm(ckpts, desc=f"measuring {run_dir.name}", disable=not progress):
        model = tok = None

        def load():
            nonlocal model, tok
            if model is None:
                model, tok = load_checkpoint(path)
            return model, tok

        key = f"uas_{treebank}_{n_sentences}_step{step:07d}.parquet"

        def score_uas():
            nonlocal enc
            m, t = load()
            if enc is None:
                enc = sas.first_n(sas.encode_treebank(sents, t, m.config.max_position_embeddings), n_sentences)
                (out_dir / f"uas_{treebank}_{n_sentences}_notes.json").write_text(json.dumps(enc.notes))
            return sas.score_uas(m, enc)

        uas_rows.append(_cached(out_dir / key, score_uas).assign(step=step))
        if blimp_per_paradigm:
            def score_blimp():
                nonlocal pairs
                m, t = load()
                if pairs is None:
                    pairs, _ = blimp_lib.fitting_pairs(
                        blimp_lib.load_blimp(data_dir, n_per_paradigm=blimp_per_paradigm), t,
                        m.config.max_position_embeddings)
                return blimp_lib.blimp_table(blimp_lib.score_blimp(m, t, pairs))

            blimp_rows.append(_cached(out_dir / f"blimp_{blimp_per_paradigm}_step{step:07d}.parquet",
                                      score_blimp).assign(step=step))
    uas = pd.concat(uas_rows, ignore_index=True).assign(run=run_dir.name)
    bl = pd.concat(blimp_rows, ignore_index=True).assign(run=run_dir.name) if blimp_rows else pd.DataFrame()
    return uas, bl


def best_heads(uas: pd.DataFrame, relations: Sequence[str] | None = None, min_arcs: int = 100) -> pd.DataFrame:
    """Per (run, step, relation): the best head's UAS and the best offset baseline (relations with >= min_arcs)."""
    keys = [c for c in ("run", "step") if c in uas]
    df = uas if relations is None else uas[uas.relation.isin(["all", *relations])]
    df = df[df.n >= min_arcs]
    heads = df[df.layer >= 0].groupby(keys + ["relation"]).uas.max().rename("best_head")
    base = df[df.layer < 0].groupby(keys + ["relation"]).uas.max().rename("best_offset")
    return pd.concat([heads, base], axis=1).reset_index()


def measure_runs(run_dirs: Sequence[str | Path], **kw) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:func:`measure_run` over several runs; also returns their training logs (``run`` column)."""
    uas, bl, logs = [], [], []
    for r in run_dirs:
        u, b = measure_run(r, **kw)
        uas.append(u)
        bl.append(b)
        logs.append(read_metrics(r).assign(run=Path(r).name))
    return (pd.concat(uas, ignore_index=True), pd.concat(bl, ignore_index=True) if any(len(b) for b in bl)
            else pd.DataFrame(), pd.concat(logs, ignore_index=True))


def checkpoint_curves(uas: pd.DataFrame, blimp: pd.DataFrame, logs: pd.DataFrame) -> pd.DataFrame:
    """One wide table per (run, step): ``loss`` (held-out, from the training log), ``uas`` (best head,
    root excluded), ``offset`` (best fixed-offset baseline), ``blimp`` (mean over paradigms).
    Steps come from the log and the checkpoints (NaN where a metric was not measured)."""
    best = best_heads(uas, relations=[], min_arcs=0)
    best = best[best.relation == "all"].rename(columns={"best_head": "uas", "best_offset": "offset"})
    out = best[["run", "step", "uas", "offset"]]
    if len(logs):
        out = out.merge(logs[["run", "step", "eval_loss"]].rename(columns={"eval_loss": "loss"}),
                        on=["run", "step"], how="outer")
    if len(blimp):
        bm = blimp.groupby(["run", "step"]).accuracy.mean().rename("blimp").reset_index()
        out = out.merge(bm, on=["run", "step"], how="outer")
    return out.sort_values(["run", "step"]).reset_index(drop=True)


def relation_table(logs: pd.DataFrame, by: str = "run") -> pd.DataFrame:
    """Long per-relation table from in-training metrics logs (columns ``uas/<rel>``, ``offset/<rel>``
    written by :func:`sasutils.sas.summarize`): one row per (``by``, step, relation) with ``best_head``,
    ``best_offset`` and ``margin`` = best_head - best_offset (> 0: a head beats every fixed offset)."""
    rels = [c.split("/", 1)[1] for c in logs.columns if c.startswith("uas/") and f"offset/{c[4:]}" in logs]
    parts = [logs[[by, "step"]].assign(relation=r, best_head=logs[f"uas/{r}"], best_offset=logs[f"offset/{r}"])
             for r in rels]
    out = pd.concat(parts, ignore_index=True).dropna(subset=["best_head"])
    return out.assign(margin=out.best_head - out.best_offset)


def offset_profiles(run_dirs: Sequence[str | Path], steps: Sequence[int] | None = None, treebank: str = "ewt-dev",
                    n_sentences: int = 500, max_offset: int = 5, data_dir=None, progress: bool = True) -> pd.DataFrame:
    """:func:`sasutils.sas.positional_share` of every head at each checkpoint of each run (``steps``: a
    subset; None = all): one row per (run, step, layer, head, direction) with ``uas``, ``modal_offset``,
    ``share`` and ``uas_off_mode``. The offset tables are cached under ``run_dir/measure/``."""
    sents = load_treebank(treebank, data_dir)
    out = []
    for r in run_dirs:
        r = Path(r)
        ckpts = [(s, p) for s, p in list_checkpoints(r) if steps is None or s in steps]
        if not ckpts:
            raise FileNotFoundError(f"no checkpoints{'' if steps is None else f' at steps {list(steps)}'} in {r / 'checkpoints'}")
        (r / "measure").mkdir(exist_ok=True)
        enc = None  # one tokenizer per run: encode once, and only if some checkpoint is not cached
        for step, path in tqdm(ckpts, desc=f"offsets {r.name}", disable=not progress):
            def profile():
                nonlocal enc
                m, t = load_checkpoint(path)
                if enc is None:
                    enc = sas.first_n(sas.encode_treebank(sents, t, m.config.max_position_embeddings), n_sentences)
                return sas.parent_offsets(m, enc, max_offset)

            prof = _cached(r / "measure" / f"offsets_{treebank}_{n_sentences}_k{max_offset}_step{step:07d}.parquet",
                           profile)
            out.append(sas.positional_share(prof).assign(run=r.name, step=step))
    return pd.concat(out, ignore_index=True)
