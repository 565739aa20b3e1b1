"""Many runs at once: a plan of configurations trained by parallel worker processes, with a deadline.

A *plan* is a JSON file ``{"callbacks": {...}, "runs": [{"preset": ..., "seed": ..., ...}, ...]}``:
each run is a parameter set for :func:`sasutils.train.make_config`, ``callbacks`` the keyword
arguments of :func:`sasutils.experiments.callbacks_for` shared by all runs. Runs start in plan order
(put the ones that matter most first); each worker is one process with one torch thread, which is how
small models use a many-core machine or share one GPU. Finished runs are skipped; at the deadline the
runs still going save their state at their next step and stop (they resume there on the next sweep).
A finished run starts no worker: its status row (with the seconds it took) and its log are kept.

    python -m sasutils.sweep configs/gpu_sweep.json --runs-root runs/gpu --workers 14 --deadline 480

Branching: a SAS-(k) run whose SAS- run (same configuration, ``suppress_steps=-1``) is in the plan
starts from SAS-'s state at step k (:func:`sasutils.train.fork`) instead of step 0: the worker of the
SAS- run pauses it at each such k, forks, and goes on; a SAS-(k) run waits until its fork exists
(or, when it can no longer be made, e.g. SAS- finished in an earlier sweep, trains from step 0).
Runs that others branch from start first.

Writes ``sweep_status.csv`` (run, status, seconds, error; rows of earlier sweeps into the same
``runs_root`` are kept) and prints a summary.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from . import experiments
from . import train as T


class PlanError(ValueError):
    """A plan, or a sweep's settings, that cannot run: raised before any compute, naming the file, run or setting."""


def read_plan(path: str | Path) -> tuple[list[dict], dict]:
    """The plan's run parameter sets (validated before any compute) and its callback arguments.
    Raises :class:`PlanError`, naming the file and the line, run or setting."""
    path = Path(path)
    try:
        plan = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except OSError as e:
        raise PlanError(f"{path}: cannot read the plan ({e.strerror})") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list) or not plan["runs"]:
        raise PlanError(f"{path}: must be an object with a non-empty list 'runs'")
    runs = []
    for i, p in enumerate(plan["runs"]):
        try:
            T.make_config(**p)
        except (TypeError, ValueError) as e:
            raise PlanError(f"{path}: runs[{i}] = {p}: {e}") from None
        runs.append(dict(p))
    from . import experiments

    cb = plan.get("callbacks", {})
    known = [k for k in inspect.signature(experiments.callbacks_for).parameters if k not in ("cfg", "tokenizer")]
    if not isinstance(cb, dict) or set(cb) - set(known):
        raise PlanError(f"{path}: 'callbacks' must be an object with keys among {known}, got {cb!r}")
    for k, v in cb.items():
        if k != "treebank" and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise PlanError(f"{path}: callbacks.{k} must be a non-negative integer, got {v!r}")
    try:
        experiments.metric_settings(**cb)
    except ValueError as e:  # e.g. sas_sentences 0 with SAS on
        raise PlanError(f"{path}: callbacks: {e}") from None
    return runs, dict(cb)


def branches(runs: list[dict]) -> dict[int, int]:
    """``{child: trunk}`` plan indices: SAS-(k) runs (k > 0) whose run with ``suppress_steps=-1`` and
    otherwise the same configuration is in the plan -- they are the same run until step k."""
    cfgs = [T.make_config(**p) for p in runs]
    key = {i: json.dumps({**T.identity(c), "suppress_steps": None}, sort_keys=True) for i, c in enumerate(cfgs)}
    trunks = {key[i]: i for i, c in enumerate(cfgs) if c["lam"] != 0 and c["suppress_steps"] == -1}
    return {i: trunks[key[i]] for i, c in enumerate(cfgs)
            if c["lam"] != 0 and 0 < c["suppress_steps"] < c["steps"] and key[i] in trunks}


def _worker(params: dict, runs_root: str, cb_kw: dict, forks: list[dict] | None = None) -> None:
    """Train one run in this process (the entry point of a worker); first, pause it at the k of each
    run in ``forks`` (SAS-(k) parameter sets) and fork that run from it, where still possible."""
    import torch

    from . import experiments
    from .corpus import load_corpus

    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, T.request_stop)  # the deadline: save state at the next step, then exit
    signal.signal(signal.SIGINT, T.request_stop)  # Ctrl-C reaches the workers too: the same
    cfg = T.make_config(**params)
    run_dir = Path(runs_root) / T.run_name(cfg)
    data = cbs = None
    for child in sorted((T.make_config(**c) for c in forks or []), key=lambda c: c["suppress_steps"]):
        k, child_dir = child["suppress_steps"], Path(runs_root) / T.run_name(child)
        if (child_dir / "config.json").exists() or _last_step(run_dir) >= k or (T.state_step(run_dir) or 0) > k:
            continue  # started already, or this run is past k: that run trains from step 0
        if data is None:  # load once for all the pauses
            data = load_corpus(cfg["corpus"], cfg["corpus_sentences"], cfg["vocab_size"], cfg["seq_len"],
                               data_dir=cfg.get("data_dir"), progress=False)
            cbs = experiments.callbacks_for(cfg, data.tokenizer, **cb_kw)
        experiments.run(cfg, runs_root, progress=False, data=data, callbacks=cbs, stop_at=k, **cb_kw)
        if T.stop_requested():
            return
        T.fork(run_dir, child_dir, child)
        print(f"forked {child_dir.name} from {run_dir.name} at step {k}", flush=True)
    experiments.run(cfg, runs_root, progress=False, data=data, callbacks=cbs, **cb_kw)


def _last_step(run_dir: Path) -> int:
    """The last evaluated step in a run's metrics log (-1 if none)."""
    log = T.read_metrics(run_dir)
    return int(log.step.max()) if len(log) else -1


def run_plan(runs: list[dict], runs_root: str | Path, cb_kw: dict | None = None, workers: int = 2,
             deadline: float | None = None, poll: float = 1.0, env: dict | None = None,
             branch: bool = True, stop_grace: float = 180.0) -> pd.DataFrame:
    """Train ``runs`` with ``workers`` processes; stop what is still running after ``deadline`` seconds.

    Returns one row per run: ``run``, ``status`` (done / failed / stopped / not started), ``seconds``,
    ``error`` (the last line of a failed run's stderr; the whole log is ``runs_root/<run>.log``).
    At the deadline each worker gets SIGTERM, saves ``state.pt`` at its next step and exits (killed after
    ``stop_grace`` seconds), so a stopped run loses no finished step.
    ``branch``: start SAS-(k) runs from their SAS- run's state at step k (see the module docstring);
    False trains every run from step 0.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:  # 0 would wait forever
        raise PlanError(f"parameter workers={workers!r}: must be an integer >= 1")
    runs_root = Path(runs_root)
    cb_kw = cb_kw or {}
    try:
        experiments.metric_settings(**cb_kw)  # before any compute: errors name the setting
    except ValueError as e:
        raise PlanError(f"callbacks: {e}") from None
    cfgs = _configs(runs)
    names = [T.run_name(c) for c in cfgs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:  # e.g. entries that differ only in device or threads: two workers would write one folder
        raise PlanError(f"runs {[i for i, n in enumerate(names) if n in dup]} of the plan are the same run: {dup}")
    trunk_of = branches(runs) if branch else {}
    trunks = set(trunk_of.values())
    pending = sorted(range(len(runs)), key=lambda i: i not in trunks)  # runs others branch from go first
    running: dict[int, tuple[subprocess.Popen, float, object]] = {}
    status = {i: ("not started", 0.0, "") for i in range(len(runs))}  # plan order
    for i in range(len(runs)):  # before any compute: no run may be resumed or reused with other metric settings
        try:
            experiments.check_metric_settings(runs_root / names[i], **cb_kw)
        except ValueError as e:
            raise PlanError(str(e)) from None
    runs_root.mkdir(parents=True, exist_ok=True)
    earlier = _read_status(runs_root)
    for i in list(pending):  # finished in an earlier sweep: keep its row and its log, start no worker
        if experiments.finished(cfgs[i], runs_root / names[i]):
            pending.remove(i)
            status[i] = ("done", earlier.get(names[i], 0.0), "")
    if len(pending) < len(runs):
        print(f"{len(runs) - len(pending)} of {len(runs)} runs finished earlier: skipped", flush=True)
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    try:
        while pending or running:
            if deadline is not None and time.time() - t0 > deadline:
                break
            while len(running) < workers:
                i = next((i for i in pending if _ready(i, trunk_of, pending, running, cfgs, names, runs_root)), None)
                if i is None:
                    break
                pending.remove(i)
                log = open(runs_root / f"{names[i]}.log", "w")
                code = ("import json, sys; from sasutils.sweep import _worker; "
                        "_worker(*json.loads(sys.argv[1]))")
                forks = [runs[c] for c, t in trunk_of.items() if t == i]
                arg = json.dumps([runs[i], str(runs_root), cb_kw, forks])
                running[i] = (subprocess.Popen([sys.executable, "-c", code, arg], stdout=log,
                                               stderr=subprocess.STDOUT, env=env), time.time(), log)
            for i, (proc, start, log) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                log.close()
                status[i] = _status(rc, names[i], cfgs[i], runs_root, time.time() - start)
                print(f"[{time.time() - t0:6.0f}s] {names[i]}: {status[i][0]} in {status[i][1]:.0f}s {status[i][2]}",
                      flush=True)
                del running[i]
            time.sleep(poll)
    finally:  # deadline or interrupt: SIGTERM, each saves its state at its next step and exits
        for proc, _, _ in running.values():
            proc.terminate()
        end = time.time() + stop_grace  # time to finish an evaluation under way; one grace for all
        for i, (proc, start, log) in running.items():
            try:
                rc = proc.wait(timeout=max(0.0, end - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            log.close()
            status[i] = _status(rc, names[i], cfgs[i], runs_root, time.time() - start, deadline=True)
        table = _write_status(status, names, runs_root)
    return table


def _status(rc: int, name: str, cfg: dict, runs_root: Path, seconds: float,
            deadline: bool = False) -> tuple[str, float, str]:
    """Status of a run whose worker has exited: ``deadline`` if the sweep sent it SIGTERM (the deadline, or an
    interrupt of the sweep), else it exited by itself (a worker stopped from outside also exits 0, with its state
    saved). Done only if the run reached its last step; stopped with its state saved, or killed by a signal (after
    the grace period, under a deadline); else failed."""
    killed = rc in (-signal.SIGKILL, -signal.SIGTERM) if deadline else rc < 0
    if rc != 0 and not killed:
        return "failed", seconds, _last_line(runs_root / f"{name}.log", rc)
    try:
        done, at = _last_step(runs_root / name) >= cfg["steps"], T.state_step(runs_root / name)
    except Exception as e:  # an unreadable run folder must not stop the sweep's bookkeeping
        return "failed", seconds, f"exit status {rc}; run folder unreadable: {type(e).__name__}: {e}"
    if rc == 0 and done:
        return "done", seconds, ""
    if deadline:
        how = "deadline; killed after the grace period," if killed else "deadline;"
    else:
        how = f"killed by {signal.Signals(-rc).name};" if killed else "stopped before the end;"
    return "stopped", seconds, f"{how} state at step {at}"


def _last_line(log: Path, rc: int) -> str:
    """The error of a failed worker: the last line of its log."""
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {rc}"


def _earlier_status(runs_root: Path) -> pd.DataFrame | None:
    """``runs_root/sweep_status.csv`` as earlier sweeps left it (None if there is none)."""
    path = runs_root / "sweep_status.csv"
    return pd.read_csv(path, keep_default_na=False) if path.exists() else None


def _read_status(runs_root: Path) -> dict[str, float]:
    """Seconds of each run that an earlier sweep into ``runs_root`` reported done."""
    old = _earlier_status(runs_root)
    return {} if old is None else {r.run: float(r.seconds) for r in old.itertuples() if r.status == "done"}


def _write_status(status: dict, names: list[str], runs_root: Path) -> pd.DataFrame:
    """``runs_root/sweep_status.csv``: this sweep's rows, plus earlier sweeps' rows of runs not in it (except
    those that never started: a plan edited between sweeps dropped them, and no folder of theirs exists)."""
    table = pd.DataFrame([{"run": names[i], "status": s, "seconds": round(sec, 1), "error": e}
                          for i, (s, sec, e) in status.items()])
    old = _earlier_status(runs_root)
    if old is not None:
        old = old[~old.run.isin(table.run) & ((old.status != "not started") | old.run.map(
            lambda r: (runs_root / r).exists()))]
        table = pd.concat([old, table], ignore_index=True)
    table.to_csv(runs_root / "sweep_status.csv", index=False)
    return table


def _ready(i: int, trunk_of: dict, pending: list, running: dict, cfgs: list[dict], names: list[str],
           runs_root: Path) -> bool:
    """Can run ``i`` start now? A branch waits while its trunk's worker may still fork it."""
    t = trunk_of.get(i)
    if t is None or (runs_root / names[i] / "config.json").exists():  # not a branch, or forked already
        return True
    if t in pending:  # its trunk starts first and forks it
        return False
    if t in running:  # wait for the fork, unless the trunk is past k already
        try:
            return _last_step(runs_root / names[t]) >= cfgs[i]["suppress_steps"]
        except (OSError, ValueError, T.TrainingError):  # its log is being rewritten (e.g. a restart): ask again
            return False
    return True  # the trunk finished, failed or stopped without forking it: train from step 0


def _configs(runs: list[dict]) -> list[dict]:
    """Each run's configuration, refusing one that is invalid or asks for a device this machine lacks (e.g.
    ``cuda`` on a CPU machine, or after ``--device``) before any worker starts: otherwise each worker would fail on
    its own, after loading its data."""
    import torch

    have = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    cfgs = []
    for i, p in enumerate(runs):
        try:
            cfgs.append(T.make_config(**p))
        except (TypeError, ValueError) as e:
            raise PlanError(f"runs[{i}]: {e}") from None
        dev = T.device_of(cfgs[-1])
        count = torch.cuda.device_count() if dev.type == "cuda" and have["cuda"] else None
        if not have.get(dev.type, False) or (count is not None and dev.index is not None and dev.index >= count):
            raise PlanError(f"runs[{i}] asks for device {str(dev)!r}, which this machine lacks "
                            "(--device cpu runs the plan here)")
    return cfgs


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    """``python -m sasutils.sweep PLAN [--runs-root ...] [--workers N] ...``: train a plan (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("plan", help="JSON plan: {'callbacks': {...}, 'runs': [{...}, ...]}")
    ap.add_argument("--runs-root", default="runs/sweep")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--deadline", type=float, default=None, help="seconds; runs still going are stopped")
    ap.add_argument("--device", default=None, help="override every run's device (e.g. cuda, cpu)")
    ap.add_argument("--no-branch", action="store_true", help="train SAS-(k) runs from step 0, not forked from SAS-")
    ap.add_argument("--stop-grace", type=float, default=180.0,
                    help="seconds a stopped run may take to save its state before it is killed")
    a = ap.parse_args(argv)
    if a.workers < 1:
        ap.error(f"--workers must be >= 1, got {a.workers}")
    try:  # a bad plan is a message, not a traceback
        runs, cb_kw = read_plan(a.plan)
        if a.device:
            runs = [{**r, "device": a.device} for r in runs]
        print(f"{len(runs)} runs, {a.workers} workers, deadline {a.deadline}s", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)  # e.g. `timeout`: stop the workers and write the status table
        table = run_plan(runs, a.runs_root, cb_kw, a.workers, a.deadline, branch=not a.no_branch,
                         stop_grace=a.stop_grace)
    except PlanError as e:
        ap.exit(2, f"{ap.prog}: error: {e}\n")
    print(table.status.value_counts().to_string(), flush=True)


if __name__ == "__main__":
    main()
