"""Run configurations by name: one run, or a grid, each with its metric callbacks; finished runs are skipped.

Used by the ``02_train``, ``04_intervene`` and ``05_regime`` notebooks, so that a notebook only
says *which* runs and then plots the tidy table this returns.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pandas as pd

from . import onsets
from . import train as T
from .corpus import load_corpus


def list_param(value, name: str, allow_empty: bool = False, of: type | None = None) -> list:
    """A notebook parameter that should be a list: papermill's ``-p`` passes ``'[1, 2]'`` as a string, so
    a string is parsed as a Python/JSON literal (``-y "name: [...]"`` passes a real list). A single
    non-list value becomes a one-item list; anything unparsable is an error naming the parameter.
    ``allow_empty``: ``[]`` (or None) is a valid value, returned as ``[]``; ``of``: every item must be of that type
    (``int``: an integer, not a bool), else an error naming the parameter."""
    import ast

    if value is None and allow_empty:
        return []
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            value = [value]  # e.g. one glob pattern
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        value = [value]
    if not value and not allow_empty:
        raise ValueError(f"parameter {name}: must not be empty")
    bad = [v for v in value if of is not None and (not isinstance(v, of) or (of is int and isinstance(v, bool)))]
    if bad:
        raise ValueError(f"parameter {name}={value!r}: every item must be of type {of.__name__} (not {bad[0]!r})")
    return value


def check_parameters(history: list[str]) -> None:
    """Refuse a parameter the notebook does not have, before any work: papermill only warns ("Passed unknown
    parameter") and runs on, so ``-p supress_steps 3000`` would train Base for a quarter of an hour.

    ``history``: IPython's ``In`` (the sources of the cells run so far). Papermill runs the cell it injects (its
    first line ``# Parameters``) right after the notebook's ``parameters`` cell; every name the injected cell
    assigns must be assigned by a cell run before it (under papermill, just the ``parameters`` cell), except the
    ``PAPERMILL_*`` paths papermill's ``--inject-paths`` adds. Without an injected cell (run by hand, or by
    ``pytest --nbmake``) there is nothing to check. Raises ``ValueError`` naming each unknown parameter, with the
    closest known one."""
    import ast
    import difflib

    def assigned(src: str) -> list[str]:
        try:
            tree = ast.parse(src)
        except SyntaxError:  # a cell IPython transformed into something else: it defines nothing we can read
            return []
        targets = [t for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
                   for t in (node.targets if isinstance(node, ast.Assign) else [node.target])]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]

    injected = [i for i, src in enumerate(history) if i > 0 and src.lstrip().startswith("# Parameters")]
    if not injected:
        return
    i = injected[0]  # papermill's; a later one is the same cell run again by hand
    known = {n for src in history[:i] for n in assigned(src)}
    unknown = [n for n in dict.fromkeys(assigned(history[i])) if n not in known and not n.startswith("PAPERMILL_")]
    if unknown:
        hints = [f"{n!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(n, known, 1)) else repr(n)
                 for n in unknown]
        raise ValueError(f"unknown parameter{'s' * (len(unknown) > 1)} {', '.join(hints)}: this notebook's "
                         f"parameters are {', '.join(sorted(known))}")


def callbacks_for(cfg: dict, tokenizer, sas_every: int = 0, sas_sentences: int = 300,
                  blimp_every: int = 0, blimp_per_paradigm: int = 10, treebank: str = "ewt-dev"):
    """The (every, fn) metric callbacks for a run: SAS scalar on ``treebank`` and/or BLiMP."""
    metric_settings(sas_every=sas_every, sas_sentences=sas_sentences, blimp_every=blimp_every,
                    blimp_per_paradigm=blimp_per_paradigm, treebank=treebank)  # errors name the parameter
    cbs = []
    if sas_every:
        from .sas import make_sas_callback

        cbs.append((sas_every, make_sas_callback(tokenizer, cfg["seq_len"], treebank, sas_sentences,
                                                 data_dir=cfg.get("data_dir"))))
    if blimp_every:
        from .blimp import make_blimp_callback

        cbs.append((blimp_every, make_blimp_callback(tokenizer, data_dir=cfg.get("data_dir"),
                                                     n_per_paradigm=blimp_per_paradigm, max_len=cfg["seq_len"])))
    return cbs


METRICS_FILE = "metric_settings.json"  # in a run folder: the callbacks_for keywords its metrics were logged with


def metric_settings(**cb_kw) -> dict:
    """The keyword arguments of :func:`callbacks_for` (every one, defaults filled in) that a run's metrics are logged
    with, checked before any compute: an unknown name, or a count that is not an integer in range
    (``sas_every``, ``blimp_every`` >= 0; ``sas_sentences``, ``blimp_per_paradigm`` >= 1), is an error naming it."""
    known = {k: p.default for k, p in inspect.signature(callbacks_for).parameters.items()
             if k not in ("cfg", "tokenizer")}
    unknown = sorted(set(cb_kw) - set(known))
    if unknown:
        raise TypeError(f"unknown metric setting(s) {unknown}: known are {sorted(known)}")
    out = {**known, **cb_kw}
    for name, low, used in (("sas_every", 0, True), ("blimp_every", 0, True), ("sas_sentences", 1, out["sas_every"]),
                            ("blimp_per_paradigm", 1, out["blimp_every"])):
        v = out[name]
        if used and (not isinstance(v, int) or isinstance(v, bool) or v < low):  # a count of a metric that is off: unused
            raise ValueError(f"parameter {name}={v!r}: must be an integer >= {low}")
    return out


def _in_effect(settings: dict) -> dict:
    """The settings that change what is logged: a metric's count and treebank only where the metric is on."""
    off = {"sas_sentences", "treebank"} if not settings["sas_every"] else set()
    off |= {"blimp_per_paradigm"} if not settings["blimp_every"] else set()
    return {k: v for k, v in settings.items() if k not in off}


def check_metric_settings(run_dir: str | Path, **cb_kw) -> None:
    """Refuse to resume, or to return as finished, a run whose metrics were logged with other settings (its
    ``metric_settings.json``): its log would silently mix two readings, or not be the one asked for. Only settings in
    effect count (a metric's sentence or pair count where the metric is on); a setting the file lacks (added to
    :func:`callbacks_for` later) counts at its default. Runs without that file (started before it was written) or
    without a logged row are not checked. Raises ``ValueError`` naming the run and each setting."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists() or not len(T.read_metrics(run_dir)):
        return
    saved, want = _in_effect(metric_settings(**json.loads(path.read_text()))), _in_effect(metric_settings(**cb_kw))
    diff = [f"{k}={saved.get(k)!r} (asked: {want.get(k)!r})" for k in sorted(set(saved) | set(want))
            if saved.get(k) != want.get(k)]
    if diff:
        raise ValueError(f"{run_dir}: its metrics were logged with {', '.join(diff)}; pass the run's own settings, "
                         "or train into another runs_root / run_dir")


def finished(cfg: dict, run_dir: str | Path) -> bool:
    """Does ``run_dir`` hold this configuration, trained to its last step? (Then there is nothing to train.)"""
    run_dir = Path(run_dir)
    log = T.read_metrics(run_dir)
    return bool(len(log) and log.step.max() >= cfg["steps"] and (run_dir / "config.json").exists()
                and T.identity(json.loads((run_dir / "config.json").read_text())) == T.identity(cfg))


def run(cfg: dict, runs_root: str | Path = "runs", run_dir: str | Path | None = None, progress: bool = True,
        data=None, callbacks=None, stop_at: int | None = None, **cb_kw) -> pd.DataFrame:
    """Train one run (resuming if interrupted, returning the log if already finished).

    ``data`` / ``callbacks``: the loaded corpus and metric callbacks, to reuse across calls (built from
    ``cfg`` and ``cb_kw`` when None; with prebuilt ``callbacks``, ``cb_kw`` must be the settings they were built with).
    ``stop_at``: pause at that step (see :func:`sasutils.train.train`). A new run records its settings
    (:func:`metric_settings` of ``cb_kw``) in ``metric_settings.json``; resuming or reusing it with other settings is
    an error (:func:`check_metric_settings`).
    """
    run_dir = Path(run_dir) if run_dir else Path(runs_root) / T.run_name(cfg)
    check_metric_settings(run_dir, **cb_kw)
    if finished(cfg, run_dir):
        return T.read_metrics(run_dir).assign(run=run_dir.name)
    cfg_path = run_dir / "config.json"
    same = not cfg_path.exists() or T.identity(json.loads(cfg_path.read_text())) == T.identity(cfg)  # else train refuses
    if same and not len(T.read_metrics(run_dir)):  # a new run (or one with no row yet): record its settings
        run_dir.mkdir(parents=True, exist_ok=True)
        T._atomic_json(run_dir / METRICS_FILE, metric_settings(**cb_kw))
    if data is None:
        data = load_corpus(cfg["corpus"], cfg["corpus_sentences"], cfg["vocab_size"], cfg["seq_len"],
                           data_dir=cfg.get("data_dir"), progress=progress)
    cbs = callbacks_for(cfg, data.tokenizer, **cb_kw) if callbacks is None else callbacks
    return T.train(cfg, run_dir, cbs, data=data, progress=progress, stop_at=stop_at).assign(run=run_dir.name)


def run_grid(param_sets: list[dict], runs_root: str | Path = "runs", progress: bool = True, **cb_kw) -> pd.DataFrame:
    """Run every parameter set (a dict with ``preset`` and overrides); one tidy table of all logs.

    A run that fails is recorded with its error and the grid goes on (its log so far is kept).
    """
    logs = []
    for params in param_sets:
        params = dict(params)
        cfg = T.make_config(params.pop("preset", "cpu-tiny"), **params)
        name = T.run_name(cfg) if "name" not in cfg else cfg["name"]
        try:
            log = run(cfg, runs_root, progress=progress, **cb_kw)
        except T.TrainingError as e:
            print(f"{name}: {e}")
            log = T.read_metrics(Path(runs_root) / name).assign(run=name, error=str(e))
        for k, v in params.items():
            log[k] = v if not isinstance(v, (list, tuple)) else str(v)
        logs.append(log)
    return pd.concat(logs, ignore_index=True) if logs else pd.DataFrame()


def collect(runs_root: str | Path, pattern: str = "*") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every run under ``runs_root`` (finished or not) without training.

    Returns ``(logs, configs)``: all metrics logs with a ``run`` column, and one row per run with its
    configuration, ``last_step`` and ``finished``. Runs stopped early (killed, or abandoned in a
    search) are kept: a search table shows failures too. A configuration saved before an option of
    :data:`sasutils.train.LATER_DEFAULTS` existed ran at its default, and is listed with it. No run there is an error
    naming ``runs_root`` and ``pattern`` (``runs/`` is not in the repository: its runs are trained, not cloned).
    """
    logs, cfgs = [], []
    for run_dir in sorted(Path(runs_root).glob(pattern)):
        if not (run_dir / "config.json").exists():
            continue
        cfg = {**T.LATER_DEFAULTS, **json.loads((run_dir / "config.json").read_text())}
        log = T.read_metrics(run_dir)
        last = int(log.step.max()) if len(log) else -1
        cfgs.append({"run": run_dir.name, **{k: (str(v) if isinstance(v, list) else v) for k, v in cfg.items()},
                     "last_step": last, "finished": last >= cfg["steps"]})
        if len(log):
            logs.append(log.assign(run=run_dir.name))
    if not cfgs:
        raise FileNotFoundError(f"parameter runs_root={str(runs_root)!r}: no run folder (with a config.json) matches "
                                f"pattern {pattern!r}; runs are not in the repository: train them first (e.g. the "
                                "plan's sweep command in configs/README.md), or check the path")
    return (pd.concat(logs, ignore_index=True) if logs else pd.DataFrame()), pd.DataFrame(cfgs)


def wall_minutes(*logs: pd.DataFrame) -> pd.Series:
    """Wall-clock minutes of each run (its last logged ``wall``), indexed by ``run``, from one or more metrics
    tables as :func:`collect` returns them (a run in several tables: its largest value)."""
    both = pd.concat(logs, ignore_index=True)
    return both.dropna(subset=["wall"]).groupby("run").wall.max() / 60


def rescore(summary: pd.DataFrame, logs: pd.DataFrame) -> pd.DataFrame:
    """A results folder's ``summary.csv`` with every run's verdicts recomputed from its ``metrics.csv`` (``logs``) by
    today's :func:`sasutils.onsets.transition_report` (:func:`sasutils.onsets.report_table`): the summary's own columns
    that the report does not produce (the configuration, ``last_step``, ``finished``) and the report's, one row per
    run of the summary. For a folder written by an earlier rule whose runs are no longer on disk to collect again."""
    rep = onsets.report_table(logs)
    return summary[["run", *[c for c in summary.columns if c not in rep.columns]]].merge(rep, on="run", how="left")



def read_results(results_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A results folder as the book reads it: ``(reports, logs)``, where ``logs`` is its ``metrics.csv`` and
    ``reports`` its ``summary.csv`` rescored from those logs (:func:`rescore`) with :func:`sasutils.onsets.timing`'s
    columns (``lead``, ``all_ok``, ``misses``, ...), one row per run, sorted by ``seed`` where there is one."""
    results_dir = Path(results_dir)
    logs = pd.read_csv(results_dir / "metrics.csv")
    reports = onsets.timing(rescore(pd.read_csv(results_dir / "summary.csv"), logs))
    if "seed" in reports:
        reports = reports.sort_values("seed", kind="stable").reset_index(drop=True)
    return reports, logs
