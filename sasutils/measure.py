"""Measure every checkpoint of a run: per-head UAS tables and BLiMP, as tidy tables cached in the run.

``03_measure`` calls :func:`measure_runs`; results are cached under ``run_dir/measure/`` keyed by the
measurement's parameters, so re-running the notebook only scores new checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import blimp as blimp_lib
from . import model as model_lib
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


def _heads_cache(run_dir: Path, variant: str, treebank: str, n_sentences: int, step: int) -> Path:
    """Where a checkpoint's per-head UAS table is cached. ``variant`` "" is the SAS scalar's reading (summed rule, with
    word order, the run's rows): one file shared by :func:`position_ablation`, :func:`word_rule_readings` and
    :func:`extended_positions_reading`, which compute it the same way; other variants name how it was read."""
    return run_dir / "measure" / f"uas{variant}_{treebank}_{n_sentences}_heads_step{step:07d}.parquet"


def _run_sentences(run_dir: Path, sents, n_sentences: int | None):
    """``(cfg, tokenizer, enc)`` of a run: its config.json, its saved tokenizer, and the first ``n_sentences`` of
    ``sents`` that fit its rows (the SAS scalar's sentences; None: all that fit)."""
    from transformers import AutoTokenizer

    cfg = json.loads((run_dir / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    return cfg, tok, sas.first_n(sas.encode_treebank(sents, tok, cfg["seq_len"]), n_sentences)


class MissingCheckpoints(FileNotFoundError):
    """A run has no checkpoint at the steps a reading asks for (:func:`read_each` leaves such a run out)."""


def _checkpoints_at(run_dir: Path, steps: Sequence[int] | None) -> list[tuple[int, Path]]:
    """(step, path) of ``run_dir``'s checkpoints at ``steps`` (None = all), with its ``measure/`` cache folder made;
    an error names the run and the steps if there are none."""
    ckpts = [(s, p) for s, p in list_checkpoints(run_dir) if steps is None or s in steps]
    if not ckpts:
        raise MissingCheckpoints(f"no checkpoints{'' if steps is None else f' at steps {list(steps)}'} in {run_dir / 'checkpoints'}")
    (run_dir / "measure").mkdir(exist_ok=True)
    return ckpts


def measure_run(run_dir: str | Path, treebank: str = "ewt-dev", n_sentences: int = 500,
                blimp_per_paradigm: int = 0, data_dir=None, steps: Sequence[int] | None = None,
                progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score each checkpoint of ``run_dir``.

    Returns ``(uas, blimp)``: ``uas`` has one row per (step, layer, head, direction, relation) plus
    the offset baselines (layer = -1); ``blimp`` one row per (step, paradigm) with accuracy (empty if
    ``blimp_per_paradigm`` is 0). Both carry a ``run`` column.
    """
    run_dir = Path(run_dir)
    ckpts = _checkpoints_at(run_dir, steps)
    out_dir = run_dir / "measure"
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
    base = df[df.layer == -1].groupby(keys + ["relation"]).uas.max().rename("best_offset")
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
        ckpts = _checkpoints_at(r, steps)
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


class TokenizerMismatch(ValueError):
    """A run's tokenizer numbers its pieces unlike the corpus cache's, so its held-out batches cannot be rebuilt."""


def position_ablation(run_dirs: Sequence[str | Path], steps: Sequence[int] | None = None, treebank: str = "ewt-dev",
                      n_sentences: int = 500, loss: bool | None = True, data_dir=None,
                      progress: bool = True) -> pd.DataFrame:
    """Each checkpoint with and without word order (:func:`sasutils.model.position_blind`).

    One row per (run, step): ``sas_uas``, ``sas_soft``, ``sas_head`` (as the training log has them when
    ``treebank`` and ``n_sentences`` are the run's SAS callback's), and ``blind_uas``, ``blind_soft``,
    ``blind_head``: the same with the position table replaced by its mean row, so that every head can attend by
    content only; ``uniform_uas`` and ``uniform_uas_random``: :func:`sasutils.sas.uniform_baseline` (``dep``,
    ties broken by first index and at random) on the same sentences, with the run's tokenizer. With ``loss``:
    ``eval_loss`` and ``blind_loss``, the held-out MLM loss of :func:`sasutils.train.evaluate` (the same batches
    and masks as the log) with and without order; ``blind_loss - eval_loss`` is what removing order costs, at
    most what the model gets from it. Raises :class:`TokenizerMismatch` if the run's tokenizer differs from the
    corpus cache's (``loss=False`` still works; with ``loss=None`` the losses it cannot recompute are NaN, with a
    warning naming the run, and those already cached are kept).

    ``steps``: a subset of the checkpoints (None = all); requested steps without a checkpoint are left out
    (the rows say which remain). Results are cached per checkpoint under ``run_dir/measure/``. The ablation
    is clean at the first checkpoints, where the model uses order little; after the transition the blind
    model is far from anything it was trained as, and its numbers say little about what content alone could
    give.
    """
    from .corpus import load_corpus
    from .train import _vocab_moves, evaluate

    sents = load_treebank(treebank, data_dir)
    rows = []
    for r in run_dirs:
        r = Path(r)
        ckpts = _checkpoints_at(r, steps)
        cfg, _, enc = _run_sentences(r, sents, n_sentences)
        floor = sas.uniform_baseline(enc)["dep"], sas.uniform_baseline(enc, ties="random")["dep"]
        data, run_loss = None, loss is not False
        for step, path in tqdm(ckpts, desc=f"position ablation {r.name}", disable=not progress):
            model = None

            def load():
                nonlocal model
                if model is None:
                    model, _ = load_checkpoint(path)
                return model

            def order(blind: bool):  # the model as trained, or without word order
                return model_lib.position_blind(load()) if blind else contextlib.nullcontext()

            def uas(blind: bool) -> dict:
                def score():
                    with order(blind):
                        return sas.score_uas(load(), enc, baselines=False)
                return sas.summarize(_cached(_heads_cache(r, "_blind" if blind else "", treebank, n_sentences, step),
                                             score))

            def losses() -> pd.DataFrame:
                nonlocal data
                if data is None:
                    data = load_corpus(cfg["corpus"], cfg["corpus_sentences"], cfg["vocab_size"], cfg["seq_len"],
                                       data_dir=data_dir or cfg.get("data_dir"), progress=progress)
                    moved = _vocab_moves(r / "tokenizer" / "tokenizer.json", data.tokenizer.get_vocab())
                    if moved:
                        raise TokenizerMismatch(f"{r}: its tokenizer differs from the corpus cache's ({moved}); "
                                                "its held-out loss cannot be recomputed with this cache")
                out = {}
                for blind, col in ((False, "eval_loss"), (True, "blind_loss")):
                    with order(blind):
                        out[col] = evaluate(load(), data, cfg)["eval_loss"]
                return pd.DataFrame([out])

            seen, blind = uas(False), uas(True)
            row = dict(run=r.name, step=step, sas_uas=seen["sas_uas"], sas_soft=seen["sas_soft"], sas_head=seen["sas_head"],
                       blind_uas=blind["sas_uas"], blind_soft=blind["sas_soft"], blind_head=blind["sas_head"],
                       uniform_uas=floor[0], uniform_uas_random=floor[1])
            if run_loss:
                try:
                    row.update(_cached(r / "measure" / f"loss_blind_step{step:07d}.parquet", losses).iloc[0].to_dict())
                except TokenizerMismatch as e:
                    if loss:
                        raise
                    warnings.warn(f"{e}: eval_loss and blind_loss left NaN", stacklevel=2)
                    run_loss = False
            if loss is None and not run_loss:
                row.update(eval_loss=np.nan, blind_loss=np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def read_each(read: Callable[..., pd.DataFrame], run_dirs: Sequence[str | Path], report: bool = True,
              **kw) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """Apply a checkpoint reading (:func:`position_ablation`, :func:`extended_positions_reading`,
    :func:`attention_scale`, :func:`word_rule_readings`, ...) to each run on its own, with ``kw``, so that a run
    without the checkpoints asked for (:class:`MissingCheckpoints`) is left out, with its reason, instead of stopping
    the others. Any other error stops it (a missing data file too: it would leave out every run).

    Returns the readings of every run that could be read, concatenated (None if none could), and ``{run name:
    reason}`` for each run left out. With ``report``, prints how many runs were read and why each other one was not.
    """
    parts, skipped = [], {}
    for r in map(Path, run_dirs):
        try:
            parts.append(read([r], **kw))
        except MissingCheckpoints as e:
            skipped[r.name] = str(e)
    if report:
        name = getattr(read, "__name__", "reading")
        print(f"{name}: {len(parts)} of {len(parts) + len(skipped)} runs"
              + "".join(f"\n  {run}: left out ({why})" for run, why in skipped.items()))
    return (pd.concat(parts, ignore_index=True) if parts else None), skipped


def attention_scale(run_dirs: Sequence[str | Path], steps: Sequence[int] | None = None, treebank: str = "ewt-dev",
                    n_sentences: int = 500, data_dir=None, progress: bool = True) -> pd.DataFrame:
    """How large each head's attention logits are at a run's checkpoints, from its weights and from its attention.

    One row per run, step, layer and head: ``query_rms`` and ``key_rms``, the root mean square of the layer's query and
    key weight matrices (D, D) (how far training has moved them from ``init_range * qk_init``; the same for every head
    of a layer); ``logit_spread`` and ``entropy_deficit``, the head's mean over the query rows of the first
    ``n_sentences`` sentences of ``treebank`` that fit the run's rows (the SAS scalar's sentences) of
    :func:`sasutils.sas.attention_spread`: the standard deviation of its pre-softmax logits over the keys (0 for
    uniform attention) and ``1 - H / log n``. The weights alone do not give the logits' size once training has
    aligned them and scaled the layer norms; the forward pass does.

    Raises ``FileNotFoundError`` naming the run if none of ``steps`` has a checkpoint; requested steps without one are
    left out (the rows say which remain). Cached per checkpoint under ``run_dir/measure/``.
    """
    import torch

    sents = load_treebank(treebank, data_dir)
    rows = []
    for r in map(Path, run_dirs):
        ckpts = _checkpoints_at(r, steps)
        _, _, enc = _run_sentences(r, sents, n_sentences)
        for step, path in tqdm(ckpts, desc=f"attention scale {r.name}", disable=not progress):
            def table() -> pd.DataFrame:
                model, _ = load_checkpoint(path)  # verified
                spread = deficit = n = 0
                with torch.no_grad():
                    for batch, attn in sas.chunk_attentions(model, enc):
                        a, b, c = sas.attention_spread(attn, batch.attention_mask)
                        spread, deficit, n = spread + a, deficit + b, n + c
                out = []
                for layer in range(spread.shape[0]):
                    att = model.bert.encoder.layer[layer].attention.self
                    rms = {f"{m}_rms": getattr(att, m).weight.detach().double().pow(2).mean().sqrt().item()
                           for m in ("query", "key")}
                    for head in range(spread.shape[1]):
                        out.append(dict(layer=layer, head=head, **rms, logit_spread=(spread[layer, head] / n).item(),
                                        entropy_deficit=(deficit[layer, head] / n).item()))
                return pd.DataFrame(out)

            name = f"attention_scale_{treebank}_{n_sentences}_step{step:07d}.parquet"
            rows.append(_cached(r / "measure" / name, table).assign(run=r.name, step=step))
    cols = ["run", "step", "layer", "head", "query_rms", "key_rms", "logit_spread", "entropy_deficit"]
    return pd.concat(rows, ignore_index=True)[cols]


def word_rule_readings(run_dirs: Sequence[str | Path], steps: Sequence[int] | None = None, treebank: str = "ewt-dev",
                       n_sentences: int = 300, data_dir=None, progress: bool = True) -> pd.DataFrame:
    """The SAS scalar at a run's checkpoints under both rules for attention *to* a word (:data:`sasutils.sas.TO_WORD`):
    summed over its pieces (Clark et al.; the SAS scalar as logged) and averaged over them (under which a uniform head
    favours no word). A what-if reading for the criterion "SAS <= 0.15 before the transition", not a new definition.

    One row per run, step and rule ``to``: ``sas_uas``, ``sas_head`` (as :func:`sasutils.sas.summarize` gives them on
    the first ``n_sentences`` sentences of ``treebank`` that fit the run's rows; with ``to="sum"`` and the run's
    callback sentences, the logged value), ``uniform_uas`` and ``uniform_uas_random``: the uniform head's ``dep``
    UAS under the same rule (:func:`sasutils.sas.uniform_baseline`, ties by first index and at random). Raises
    ``FileNotFoundError`` naming the run if none of ``steps`` has a checkpoint. Cached per checkpoint and rule under
    ``run_dir/measure/``.
    """
    sents = load_treebank(treebank, data_dir)
    rows = []
    for r in map(Path, run_dirs):
        ckpts = _checkpoints_at(r, steps)
        _, _, enc = _run_sentences(r, sents, n_sentences)
        floors = {to: (sas.uniform_baseline(enc, to=to)["dep"], sas.uniform_baseline(enc, "random", to)["dep"])
                  for to in sas.TO_WORD}
        for step, path in tqdm(ckpts, desc=f"word rules {r.name}", disable=not progress):
            model = None
            for to in sas.TO_WORD:
                def score():
                    nonlocal model
                    if model is None:
                        model, _ = load_checkpoint(path)  # verified; loaded only if a rule is not cached
                    return sas.score_uas(model, enc, baselines=False, to=to)

                summ = sas.summarize(_cached(_heads_cache(r, "" if to == "sum" else f"_{to}", treebank, n_sentences,
                                                          step), score))
                rows.append(dict(run=r.name, step=step, to=to, sas_uas=summ["sas_uas"], sas_head=summ["sas_head"],
                                 uniform_uas=floors[to][0], uniform_uas_random=floors[to][1]))
    return pd.DataFrame(rows)


def _missing_readings(logs: pd.DataFrame, readings: pd.DataFrame) -> dict[str, list[int]]:
    """The logged SAS steps of ``readings``' runs without a reading there: ``{run: [steps]}`` (empty if none)."""
    have = set(zip(readings.run, readings.step))
    logged = logs[logs.run.isin(set(readings.run)) & logs.sas_uas.notna()]
    missing: dict[str, list[int]] = {}
    for run, step in zip(logged.run, logged.step):
        if (run, step) not in have:
            missing.setdefault(run, []).append(int(step))
    return missing


def _check_unique(readings: pd.DataFrame) -> None:
    dup = readings[readings.duplicated(["run", "step", "to"], keep=False)]
    if len(dup):
        raise ValueError("readings: more than one row for (run, step, to) " +
                         ", ".join(map(str, sorted(set(zip(dup.run, dup.step, dup.to)))[:5])) +
                         (" ..." if len(dup) > 5 else "") + " (concatenated twice?)")


def reread_log(logs: pd.DataFrame, readings: pd.DataFrame, to: str) -> pd.DataFrame:
    """``logs`` (metrics rows with ``run`` and ``step``) with ``sas_uas`` replaced by ``readings``' (of
    :func:`word_rule_readings`) under rule ``to``, at the SAS steps of the runs that ``readings`` covers; every other
    column as logged. For :func:`sasutils.onsets.report_table` on the what-if reading. A logged SAS step without a
    reading, or a repeated ``(run, step, to)`` row, is an error naming them (the verdicts would otherwise mix the
    rules)."""
    sas.check_to_word(to)
    _check_unique(readings)
    rd = readings[readings.to == to]
    missing = _missing_readings(logs, rd)
    if missing:
        raise ValueError("reread_log: no reading at logged SAS step(s) " +
                         "; ".join(f"{run}: {steps}" for run, steps in missing.items()) +
                         " (checkpoints at every SAS step are needed: checkpoint_every = sas_every)")
    out = logs[logs.run.isin(set(rd.run))].copy()
    has = out.sas_uas.notna()
    value = rd.set_index(["run", "step"]).sas_uas
    out.loc[has, "sas_uas"] = value.reindex(pd.MultiIndex.from_frame(out.loc[has, ["run", "step"]])).to_numpy()
    return out


def logged_gap(logs: pd.DataFrame, readings: pd.DataFrame) -> pd.Series:
    """Per run of ``readings``, the largest ``|summed reading - logged sas_uas|`` over the logged SAS steps that have a
    reading: about 0 where ``readings`` were taken on the run's own SAS sentences (then the ``"sum"`` verdicts of
    :func:`rule_verdicts` are the logged ones); larger where another sentence count was read. ``readings``: rows with
    ``run``, ``step``, ``sas_uas`` (and ``to``, of which the ``"sum"`` rows count), as :func:`word_rule_readings` and
    :func:`position_ablation` give them."""
    logged = logs.dropna(subset=["sas_uas"]).set_index(["run", "step"]).sas_uas
    summed = (readings[readings.to == "sum"] if "to" in readings else readings).set_index(["run", "step"]).sas_uas
    both = summed.index.intersection(logged.index)
    gap = (summed.loc[both] - logged.loc[both]).abs()
    return gap.groupby(level="run").max().reindex(summed.index.get_level_values("run").unique())


def rule_verdicts(logs: pd.DataFrame, readings: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Each run's verdicts (:func:`sasutils.onsets.timing` of :func:`sasutils.onsets.report_table`) with its logged SAS
    read under each rule of ``readings`` (:func:`word_rule_readings`; :func:`reread_log`): one row per run and rule
    ``to``, the logged rule first. Returns ``(table, skipped)``: runs of ``readings`` that cannot be judged under every
    rule -- no metrics in ``logs``, no reading under some rule, or none at some logged SAS step -- are left out, and
    ``skipped`` says why (``{run: reason}``)."""
    from . import onsets

    _check_unique(readings)
    rules = [t for t in sas.TO_WORD if t in set(readings.to)]  # the logged rule first
    skipped: dict[str, str] = {}
    for run, rd in readings.groupby("run", sort=False):
        if not (logs.run == run).any():
            skipped[run] = "no metrics in the logs"
        elif set(rd.to) != set(rules):
            skipped[run] = f"no reading under rule(s) {sorted(set(rules) - set(rd.to))}"
        else:
            steps = sorted({s for to in rules for s in _missing_readings(logs, rd[rd.to == to]).get(run, [])})
            if steps:
                skipped[run] = f"no reading at logged SAS step(s) {steps}"
    ok = readings[~readings.run.isin(set(skipped))]
    parts = [onsets.report_table(reread_log(logs, ok[ok.run == run], to)).assign(to=to)
             for run in ok.run.unique() for to in rules]
    return (onsets.timing(pd.concat(parts, ignore_index=True)) if parts else pd.DataFrame()), skipped


def _grown_uas(path: Path, enc: sas.EncodedTreebank, n_positions: int, seed: int, pos_init: str) -> pd.DataFrame:
    """Per-head UAS of the checkpoint at ``path`` on ``enc``, its position table grown to ``n_positions`` rows."""
    m, _ = load_checkpoint(path)
    model_lib.extend_positions(m, n_positions, seed=seed, init=pos_init)
    return sas.score_uas(m, enc, baselines=False)


def _fit_uas(path: Path, enc: sas.EncodedTreebank) -> pd.DataFrame:
    return sas.score_uas(load_checkpoint(path)[0], enc, baselines=False)


def extended_positions_reading(run_dirs: Sequence[str | Path], steps: Sequence[int] | None = None,
                               n_positions: int = 512, treebank: str = "ewt-dev", n_sentences: int = 300,
                               seed: int = 0, data_dir=None, progress: bool = True) -> pd.DataFrame:
    """The SAS scalar read two ways at each checkpoint: on the first ``n_sentences`` sentences that fit the
    run's rows (the project's reading, ``sas_uas``), and on the first ``n_sentences`` sentences whatever their
    length, with the position table grown to ``n_positions`` rows by :func:`sasutils.model.extend_positions`
    (``wide_uas``): how a model built with ``n_positions`` positions (a default ``BertConfig`` has 512) but
    trained on shorter rows would be read if every sentence were scored.

    One row per (run, step): ``sas_uas``, ``sas_head``, ``wide_uas``, ``wide_head``; for both sentence sets the
    uniform-attention floor (``uniform_uas``, ``wide_uniform_uas``, :func:`sasutils.sas.uniform_baseline`) and
    the best fixed-offset baseline (``offset_best``, ``wide_offset_best``: word-level, so it does not depend on the
    tokenizer's pieces, only on which sentences are read); ``wide_beyond``: the share of the wide set's scored
    words (root excluded) whose first piece sits at a position the run never trained (>= its ``seq_len``;
    position 0 is [CLS]); ``wide_long``: the share of its scored words in sentences longer than the run's rows,
    whose attention spans untrained positions. Scores are cached per checkpoint under ``run_dir/measure/``.
    Raises ``ValueError`` naming ``n_positions`` if it does not exceed a run's ``seq_len`` or if one of the
    first ``n_sentences`` sentences does not fit it.
    """
    sents = load_treebank(treebank, data_dir)
    relations = sorted({r for s in sents for r in s.deprels})
    rows = []
    for r in run_dirs:
        r = Path(r)
        ckpts = _checkpoints_at(r, steps)
        cfg, tok, fit = _run_sentences(r, sents, n_sentences)
        T = cfg["seq_len"]
        if n_positions <= T:
            raise ValueError(f"parameter n_positions={n_positions}: must exceed the run's seq_len {T} ({r})")
        wide = sas.encode_treebank(sents[:n_sentences], tok, n_positions, relations)
        if wide.skipped_too_long:
            raise ValueError(f"parameter n_positions={n_positions}: {wide.skipped_too_long} of the first {n_sentences} "
                             f"{treebank} sentences are longer; raise it")
        first = [np.array([np.flatnonzero(p2w == w)[0] for w in range(len(h)) if h[w] >= 0])
                 for p2w, h in zip(wide.p2w, wide.heads)]
        words = np.concatenate(first)
        long = np.concatenate([np.full(len(f), len(ids) > T) for f, ids in zip(first, wide.ids)])
        offsets = [sas.offset_baselines(e).query("relation == 'all'").uas.max() for e in (fit, wide)]
        fixed = dict(seq_len=T, uniform_uas=sas.uniform_baseline(fit)["dep"], offset_best=offsets[0],
                     wide_uniform_uas=sas.uniform_baseline(wide)["dep"], wide_offset_best=offsets[1],
                     wide_beyond=float(np.mean(words >= T)), wide_long=float(np.mean(long)))
        pos_init = cfg.get("pos_init", "normal")
        for step, path in tqdm(ckpts, desc=f"extended positions {r.name}", disable=not progress):
            seen = sas.summarize(_cached(_heads_cache(r, "", treebank, n_sentences, step), lambda: _fit_uas(path, fit)))
            grown = sas.summarize(_cached(_heads_cache(r, f"_wide{n_positions}s{seed}", treebank, n_sentences, step),
                                          lambda: _grown_uas(path, wide, n_positions, seed, pos_init)))
            rows.append(dict(run=r.name, step=step, sas_uas=seen["sas_uas"], sas_head=seen["sas_head"],
                             wide_uas=grown["sas_uas"], wide_head=grown["sas_head"], **fixed))
    return pd.DataFrame(rows)


def held_out_relations(select: pd.DataFrame, evaluate: pd.DataFrame, min_arcs: int = 100) -> pd.DataFrame:
    """Per relation, the best head against the best fixed offset, both **chosen on one treebank and scored on
    another** (e.g. chosen on EWT-dev, scored on EWT-test), so that picking the maximum of many heads does
    not by itself produce a margin.

    ``select`` and ``evaluate``: :func:`measure_run` UAS tables (columns ``run``, ``step``, ``layer``,
    ``head``, ``direction``, ``relation``, ``n``, ``uas``; offset rows have ``layer`` = -1). For each
    (run, step, relation) with at least ``min_arcs`` arcs in both ("all+root" left out): the head (``layer``, ``head``,
    ``direction``; label ``best_head``) with the highest UAS on ``select`` and the best ``offset`` k on
    ``select``; ``head_uas`` and ``offset_uas`` are their UAS on ``evaluate``, ``margin`` = head_uas -
    offset_uas, and ``sel_margin`` the same difference on ``select`` (biased upwards by the choice).

    ``se_max`` = sqrt(p_h (1 - p_h) / n) + sqrt(p_o (1 - p_o) / n), with n the arcs in ``evaluate``: the
    largest standard error the margin can have whatever the correlation of the two scores over arcs
    (arcs treated as independent, though arcs of one sentence are not). ``above`` = margin > 2 se_max, a
    conservative flag; :func:`paired_margins` gives the paired test.
    """
    keys = ["run", "step", "relation"]
    head_key = ["layer", "head", "direction"]
    sel = select[(select.n >= min_arcs) & (select.relation != "all+root")]  # root words: never right
    ev = evaluate[evaluate.n >= min_arcs].set_index(keys + head_key)
    rows = []
    for (run, step, rel), g in sel.groupby(keys, sort=True):
        heads, offs = g[g.layer >= 0], g[g.layer == -1]
        if not len(heads) or not len(offs):
            continue
        h = heads.loc[heads.uas.idxmax()]
        o = offs.loc[offs.uas.idxmax()]
        try:
            eh = ev.loc[(run, step, rel, h.layer, h["head"], h.direction)]
            eo = ev.loc[(run, step, rel, o.layer, o["head"], o.direction)]
        except KeyError:
            continue  # the relation has too few arcs in ``evaluate`` (or the step was not scored there)
        n = int(eh.n)
        se = (eh.uas * (1 - eh.uas) / n) ** 0.5 + (eo.uas * (1 - eo.uas) / n) ** 0.5
        rows.append(dict(run=run, step=step, relation=rel, layer=int(h.layer), head=int(h["head"]),
                         direction=h.direction, best_head=f"L{h.layer}H{h['head']}-{h.direction}",
                         offset=int(o.direction.replace("offset", "")), n=n, head_uas=float(eh.uas),
                         offset_uas=float(eo.uas), margin=float(eh.uas - eo.uas), se_max=float(se),
                         sel_margin=float(h.uas - o.uas)))
    out = pd.DataFrame(rows, columns=["run", "step", "relation", "layer", "head", "direction", "best_head", "offset",
                                      "n", "head_uas", "offset_uas", "margin", "se_max", "sel_margin"])
    return out.assign(above=out.margin > 2 * out.se_max)


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: ``P(abs(X - m/2) >= abs(b - m/2))``, ``X ~ Binomial(m = b + c, 1/2)``."""
    m = b + c
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, x) for x in range(min(b, c) + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def sign_flip_p(d: np.ndarray, draws: int = 10_000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of ``sum(d)`` for per-cluster differences ``d`` (S,): the share of
    random sign patterns (plus the observed one) whose ``abs(sum(s * d))`` reaches ``abs(sum(d))``. With ``d`` the
    per-sentence (head-only - offset-only) arc counts, this is the paired test with sentences, not arcs, as the
    independent units."""
    d = np.asarray(d, float)
    d = d[d != 0]
    if not len(d):
        return 1.0
    signs = np.random.default_rng(seed).integers(0, 2, (draws, len(d))) * 2 - 1
    hits = (np.abs(signs @ d) >= abs(d.sum()) - 1e-9).sum()
    return float((hits + 1) / (draws + 1))


def paired_margins(held: pd.DataFrame, run_dirs: Sequence[str | Path], treebank: str = "ewt-test",
                   n_sentences: int = 500, data_dir=None, draws: int = 10_000, progress: bool = True) -> pd.DataFrame:
    """:func:`held_out_relations` rows with paired tests on the arcs of ``treebank`` (the evaluation set).

    For each row (run, step, relation): ``head_only`` = arcs the chosen head gets right and the chosen
    offset gets wrong, ``offset_only`` the reverse; ``p_paired`` = :func:`mcnemar_p` of the two (arcs treated
    as independent) and ``p_sentences`` = :func:`sign_flip_p` of the per-sentence differences (sentences as the
    units: arcs of one sentence are not independent). The same against the chosen offset k with the edge rule
    of :func:`sasutils.sas.offset_correct` (k is the one chosen under the plain rule): ``mirror_uas``,
    ``mirror_margin``, ``head_only_mirror``, ``mirror_only``, ``p_mirror``, ``p_mirror_sentences``. ``held``'s
    ``run`` names are matched to the directories' names; rows of runs not in ``run_dirs`` are an error.
    The chosen head's and offset's correct-arc counts are recomputed from the arcs and must match ``held``
    (within half an arc: the table may come from another device, where an argmax tie can fall differently).
    """
    by_name = {Path(r).name: Path(r) for r in run_dirs}
    missing = sorted(set(held.run) - set(by_name))
    if missing:
        raise ValueError(f"rows for runs not in run_dirs: {missing}")
    sents = load_treebank(treebank, data_dir)
    encoded = {}  # one tokenizer per run: encode the treebank once
    out = []
    for (run, step), g in tqdm(held.groupby(["run", "step"], sort=True), desc="paired tests", disable=not progress):
        ckpt = dict(list_checkpoints(by_name[run])).get(int(step))
        if ckpt is None:
            raise FileNotFoundError(f"no checkpoint at step {step} in {by_name[run] / 'checkpoints'}")
        m, t = load_checkpoint(ckpt)
        if run not in encoded:
            encoded[run] = sas.first_n(sas.encode_treebank(sents, t, m.config.max_position_embeddings), n_sentences)
        enc = encoded[run]
        wc = sas.word_correctness(m, enc)
        S = len(enc)
        for _, r in g.iterrows():
            if r.relation == "all":
                mask = np.ones(len(wc["relation"]), bool)
            elif r.relation in enc.relations:
                mask = wc["relation"] == enc.relations.index(r.relation)
            else:
                raise ValueError(f"relation {r.relation!r} not in {treebank}")
            d = sas.DIRECTIONS.index(r.direction)
            hc = wc["heads"][r.layer, r["head"], d][mask]
            pos = [wc[k][mask] for k in ("position", "length", "gold")]
            oc = sas.offset_correct(*pos, r.offset)
            mc = sas.offset_correct(*pos, r.offset, mirror=True)
            n = int(mask.sum())
            if n != r.n or abs(hc.sum() - r.head_uas * n) > 0.5 or abs(oc.sum() - r.offset_uas * n) > 0.5:
                raise RuntimeError(f"{run} step {step} {r.relation}: the arcs give {n} arcs, {hc.mean():.4f} / "
                                   f"{oc.mean():.4f}, the table {r.n} arcs, {r.head_uas:.4f} / {r.offset_uas:.4f} "
                                   "(different sentences?)")
            sent = wc["sentence"][mask]

            def per_sentence(a, b):
                return np.bincount(sent, weights=(a & ~b).astype(float) - (~a & b), minlength=S)

            b, c = int((hc & ~oc).sum()), int((~hc & oc).sum())
            bm, cm = int((hc & ~mc).sum()), int((~hc & mc).sum())
            out.append(dict(r, head_only=b, offset_only=c, p_paired=mcnemar_p(b, c),
                            p_sentences=sign_flip_p(per_sentence(hc, oc), draws),
                            mirror_uas=float(mc.mean()), mirror_margin=float(hc.mean() - mc.mean()),
                            head_only_mirror=bm, mirror_only=cm, p_mirror=mcnemar_p(bm, cm),
                            p_mirror_sentences=sign_flip_p(per_sentence(hc, mc), draws)))
    return pd.DataFrame(out)


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of a family of tests."""
    p = np.asarray(p, float)
    if not len(p):
        return p
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out


def add_fdr(paired: pd.DataFrame) -> pd.DataFrame:
    """:func:`paired_margins` rows with ``q`` and ``q_edge``: :func:`bh_adjust` of ``p_sentences`` and of
    ``p_mirror_sentences``, all rows of the table one family each."""
    return paired.assign(q=bh_adjust(paired.p_sentences), q_edge=bh_adjust(paired.p_mirror_sentences))


def paired_summary(paired: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per relation, over the runs of :func:`paired_margins` (one row per run and relation): how many runs'
    chosen head beats (``above``) or trails (``below``) the chosen offset, by the sentence-level test at a false
    discovery rate of ``alpha`` over the whole table (:func:`add_fdr`'s ``q``), against the plain offset and
    against the edge rule (``*_edge``, from ``q_edge``), with the mean and range of the margins. One row per
    relation, "all" first."""
    if paired.duplicated(["run", "relation"]).any():
        raise ValueError("paired has several rows per (run, relation): keep one step per run")
    cols = ["relation", "runs", "arcs", "above", "below", "margin_mean", "margin_min", "margin_max", "above_edge",
            "below_edge", "edge_margin_mean"]
    if not len(paired):
        return pd.DataFrame(columns=cols)
    d = add_fdr(paired)

    def count(g, sign, m, q):
        return int(((np.sign(g[m]) == sign) & (g[q] < alpha)).sum())

    rows = []
    for rel, g in d.groupby("relation", sort=True):
        rows.append(dict(relation=rel, runs=g.run.nunique(), arcs=int(g.n.median()),
                         above=count(g, 1, "margin", "q"), below=count(g, -1, "margin", "q"),
                         margin_mean=g.margin.mean(), margin_min=g.margin.min(), margin_max=g.margin.max(),
                         above_edge=count(g, 1, "mirror_margin", "q_edge"),
                         below_edge=count(g, -1, "mirror_margin", "q_edge"), edge_margin_mean=g.mirror_margin.mean()))
    out = pd.DataFrame(rows, columns=cols)
    return out.iloc[np.argsort(out.relation != "all", kind="stable")].reset_index(drop=True)


def edge_baseline(run_dir: str | Path, offset_best: float | None = None, treebank: str = "ewt-dev",
                  candidates: Sequence[int] = (300, 500, 1000, 200, 100), data_dir=None) -> float:
    """The best offset with the edge rule (:func:`sasutils.sas.offset_baselines`, ``mirror=True``) on the
    sentences a run's SAS callback scored, for logs written before the callback logged it (it depends only on
    the treebank and on which sentences fit the run's tokenizer and positions, not on the model).

    The number of sentences is not in the run's configuration: it is the first n whose plain best offset over the
    first n sentences equals the logged ``offset_best`` (within 1e-9), trying ``candidates`` first and then every
    other n from 1 up (None: the first candidate, the callback's default 300). No match is an error.
    """
    run_dir = Path(run_dir)
    _, _, enc = _run_sentences(run_dir, load_treebank(treebank, data_dir), None)  # every sentence that fits
    # per sentence: non-root words, and correct predictions of each offset, plain and with the edge rule
    n_words = np.array([(h >= 0).sum() for h in enc.heads])
    hits = {m: np.array([[sas.offset_correct(np.arange(len(h)), len(h), h, k, m)[h >= 0].sum() for k in sas.OFFSETS]
                         for h in enc.heads]).reshape(len(enc.heads), len(sas.OFFSETS)) for m in (False, True)}
    words = np.cumsum(n_words)
    cum = {m: np.cumsum(v, axis=0) for m, v in hits.items()}

    def best(m: bool, n: int) -> float:
        return float(cum[m][n - 1].max() / words[n - 1])

    if offset_best is None:
        return best(True, min(candidates[0], len(enc)))
    order = [n for n in candidates if n <= len(enc)] + [n for n in range(1, len(enc) + 1) if n not in candidates]
    for n in order:
        if words[n - 1] and abs(best(False, n) - offset_best) < 1e-9:
            return best(True, n)
    raise ValueError(f"{run_dir}: no number of {treebank} sentences gives the logged offset_best {offset_best}")


def fill_edge_baseline(logs: pd.DataFrame, runs_root: str | Path, **kw) -> pd.DataFrame:
    """``logs`` (:func:`sasutils.experiments.collect`) with ``offset_edge_best`` filled in for runs that
    logged ``offset_best`` but not it (:func:`edge_baseline`, on the rows that have ``offset_best``).
    Runs whose directory has no ``tokenizer`` (e.g. logs copied back from a GPU machine) stay NaN, with a
    warning that names them."""
    import warnings

    logs = logs.reset_index(drop=True)  # the rows are written by label below: labels must be unique
    if "offset_best" not in logs:
        return logs
    if "offset_edge_best" not in logs:
        logs["offset_edge_best"] = float("nan")
    no_tok = []
    for run, g in logs.groupby("run", sort=False):
        has = g.offset_best.notna()
        if has.any() and g.offset_edge_best.isna().all():
            if not (Path(runs_root) / run / "tokenizer").is_dir():
                no_tok.append(run)
                continue
            logs.loc[g.index[has], "offset_edge_best"] = edge_baseline(
                Path(runs_root) / run, float(g.offset_best[has].iloc[-1]), **kw)
    if no_tok:
        warnings.warn(f"offset_edge_best left empty for {len(no_tok)} run(s) without a tokenizer folder: {no_tok}")
    return logs
