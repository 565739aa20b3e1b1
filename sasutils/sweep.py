"""Many runs at once: a plan of configurations trained by parallel worker processes, with a deadline.

A *plan* is a JSON file ``{"callbacks": {...}, "runs": [{"preset": ..., "seed": ..., ...}, ...]}``:
each run is a parameter set for :func:`sasutils.train.make_config`, ``callbacks`` the keyword
arguments of :func:`sasutils.experiments.callbacks_for` shared by all runs. Runs start in plan order
(put the ones that matter most first); each worker is one process with one torch thread, which is how
small models use a many-core machine or share one GPU. Finished runs are skipped; at the deadline the
runs still going are stopped, and their logs so far are kept (they resume from their last state).

    python -m sasutils.sweep configs/gpu_sweep.json --runs-root runs/gpu --workers 14 --deadline 480

Writes ``sweep_status.csv`` (run, status, seconds, error; rows of earlier sweeps into the same
``runs_root`` are kept) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from . import train as T


def read_plan(path: str | Path) -> tuple[list[dict], dict]:
    """The plan's run parameter sets (validated before any compute) and its callback arguments."""
    path = Path(path)
    try:
        plan = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list) or not plan["runs"]:
        raise ValueError(f"{path}: must be an object with a non-empty list 'runs'")
    runs = []
    for i, p in enumerate(plan["runs"]):
        try:
            T.make_config(**p)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: runs[{i}] = {p}: {e}") from None
        runs.append(dict(p))
    return runs, dict(plan.get("callbacks", {}))


def _worker(params: dict, runs_root: str, cb_kw: dict) -> None:
    """Train one run in this process (the entry point of a worker)."""
    import torch

    from . import experiments

    torch.set_num_threads(1)
    experiments.run(T.make_config(**params), runs_root, progress=False, **cb_kw)


def run_plan(runs: list[dict], runs_root: str | Path, cb_kw: dict | None = None, workers: int = 2,
             deadline: float | None = None, poll: float = 1.0, env: dict | None = None) -> pd.DataFrame:
    """Train ``runs`` with ``workers`` processes; stop what is still running after ``deadline`` seconds.

    Returns one row per run: ``run``, ``status`` (done / failed / stopped / not started), ``seconds``,
    ``error`` (the last line of a failed run's stderr; the whole log is ``runs_root/<run>.log``).
    """
    runs_root = Path(runs_root)
    runs_root.mkdir(parents=True, exist_ok=True)
    cb_kw = cb_kw or {}
    names = [T.run_name(T.make_config(**p)) for p in runs]
    pending = list(range(len(runs)))
    running: dict[int, tuple[subprocess.Popen, float, object]] = {}
    status = {i: ("not started", 0.0, "") for i in pending}
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    try:
        while pending or running:
            if deadline is not None and time.time() - t0 > deadline:
                break
            while pending and len(running) < workers:
                i = pending.pop(0)
                log = open(runs_root / f"{names[i]}.log", "w")
                code = ("import json, sys; from sasutils.sweep import _worker; "
                        "_worker(*json.loads(sys.argv[1]))")
                arg = json.dumps([runs[i], str(runs_root), cb_kw])
                running[i] = (subprocess.Popen([sys.executable, "-c", code, arg], stdout=log,
                                               stderr=subprocess.STDOUT, env=env), time.time(), log)
            for i, (proc, start, log) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                log.close()
                err = ""
                if rc != 0:
                    lines = (runs_root / f"{names[i]}.log").read_text(errors="replace").strip().splitlines()
                    err = lines[-1] if lines else f"exit status {rc}"
                status[i] = ("done" if rc == 0 else "failed", time.time() - start, err)
                print(f"[{time.time() - t0:6.0f}s] {names[i]}: {status[i][0]} in {status[i][1]:.0f}s {err}",
                      flush=True)
                del running[i]
            time.sleep(poll)
    finally:
        for proc, _, _ in running.values():  # deadline or interrupt: stop all, keep the logs
            proc.terminate()
        for i, (proc, start, log) in running.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            status[i] = ("stopped", time.time() - start, "deadline")
    table = pd.DataFrame([{"run": names[i], "status": s, "seconds": round(sec, 1), "error": e}
                          for i, (s, sec, e) in status.items()])
    path = runs_root / "sweep_status.csv"
    if path.exists():  # earlier sweeps into the same runs_root: keep their rows for runs not in this one
        old = pd.read_csv(path, keep_default_na=False)
        table = pd.concat([old[~old.run.isin(table.run)], table], ignore_index=True)
    table.to_csv(path, index=False)
    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("plan", help="JSON plan: {'callbacks': {...}, 'runs': [{...}, ...]}")
    ap.add_argument("--runs-root", default="runs/sweep")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--deadline", type=float, default=None, help="seconds; runs still going are stopped")
    ap.add_argument("--device", default=None, help="override every run's device (e.g. cuda, cpu)")
    a = ap.parse_args(argv)
    if a.workers < 1:
        ap.error(f"--workers must be >= 1, got {a.workers}")
    runs, cb_kw = read_plan(a.plan)
    if a.device:
        runs = [{**r, "device": a.device} for r in runs]
    print(f"{len(runs)} runs, {a.workers} workers, deadline {a.deadline}s", flush=True)
    table = run_plan(runs, a.runs_root, cb_kw, a.workers, a.deadline)
    print(table.status.value_counts().to_string(), flush=True)


if __name__ == "__main__":
    main()
