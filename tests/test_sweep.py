"""sasutils.sweep: plans are validated before any compute; runs go in parallel; a deadline stops the
runs still going and keeps their logs; a second sweep skips finished runs and keeps the status rows."""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import sasutils.train as T
from sasutils import experiments, sweep

TINY = dict(preset="cpu-tiny", steps=20, warmup=5, eval_every=10, checkpoint_every=10, checkpoint_log_steps=[],
            hidden_size=32, intermediate_size=64, num_attention_heads=2, corpus_sentences=3000, vocab_size=1000,
            seq_len=32, device="cpu")


def write_plan(tmp_path, runs, callbacks=None):
    p = tmp_path / "plan.json"
    p.write_text(json.dumps({"callbacks": callbacks or {}, "runs": runs}))
    return p


def test_bad_plans_are_refused_naming_the_run(tmp_path):
    with pytest.raises(ValueError, match=r"runs\[1\].*lr"):
        sweep.read_plan(write_plan(tmp_path, [TINY, {**TINY, "lr": 5.0}]))
    with pytest.raises(ValueError, match="non-empty list 'runs'"):
        sweep.read_plan(write_plan(tmp_path, []))
    bad = tmp_path / "bad.json"
    bad.write_text('{"runs": [\n  {"seed": 0},\n  oops\n]}')
    with pytest.raises(ValueError, match=r"bad.json:3"):
        sweep.read_plan(bad)
    with pytest.raises(ValueError, match="keys among"):
        sweep.read_plan(write_plan(tmp_path, [TINY], {"sas_evry": 250}))
    with pytest.raises(ValueError, match="blimp_every must be a non-negative integer"):
        sweep.read_plan(write_plan(tmp_path, [TINY], {"blimp_every": "500"}))


@pytest.mark.parametrize("plan", sorted((Path(__file__).parents[1] / "configs").glob("*.json")), ids=lambda p: p.name)
def test_shipped_plans_are_valid(plan):
    """Every plan in configs/ reads (runs and callbacks validated) -- a typo costs no GPU time."""
    runs, cb = sweep.read_plan(plan)
    assert runs and all(T.run_name(T.make_config(**p)) for p in runs)


def test_runs_in_parallel_then_skips_finished(tmp_path):
    runs = [{**TINY, "seed": 0}, {**TINY, "seed": 1, "lam": 1.0, "suppress_steps": 10, "lr_schedule": "constant"}]
    table = sweep.run_plan(runs, tmp_path / "runs", workers=2)
    assert list(table.status) == ["done", "done"], table
    for p in runs:
        q = dict(p)
        name = T.run_name(T.make_config(q.pop("preset"), **q))
        log = T.read_metrics(tmp_path / "runs" / name)
        assert log.step.max() == 20
    logs = {n: (tmp_path / "runs" / f"{n}.log").read_text() for n in table.run}
    again = sweep.run_plan(runs, tmp_path / "runs", workers=2)
    assert list(again.status) == ["done", "done"]
    assert list(again.seconds) == list(table.seconds.round(1))  # the time they took, not the time to skip them
    assert {n: (tmp_path / "runs" / f"{n}.log").read_text() for n in again.run} == logs  # their logs are kept


def test_deadline_stops_runs_and_keeps_their_logs(tmp_path):
    long = {**TINY, "steps": 100_000, "eval_every": 5, "checkpoint_every": 100_000}  # one checkpoint: step 0
    runs = [long, {**TINY, "seed": 3}]
    table = sweep.run_plan(runs, tmp_path / "runs", workers=1, deadline=25)
    assert list(table.status) == ["stopped", "not started"], table
    name = table.run.iloc[0]
    last = T.read_metrics(tmp_path / "runs" / name).step.max()
    assert last >= 5  # the log so far is kept ...
    assert T.state_step(tmp_path / "runs" / name) >= last  # ... and the state of the last step reached, not step 0
    assert "state.pt saved" in (tmp_path / "runs" / f"{name}.log").read_text()
    assert table.error.iloc[0] == f"deadline; state at step {T.state_step(tmp_path / 'runs' / name)}"
    status = pd.read_csv(tmp_path / "runs" / "sweep_status.csv", keep_default_na=False)
    assert set(status.run) == set(table.run)
    # a later sweep of one run keeps the other rows
    sweep.run_plan([{**TINY, "seed": 3}], tmp_path / "runs", workers=1)
    status = pd.read_csv(tmp_path / "runs" / "sweep_status.csv", keep_default_na=False)
    assert dict(zip(status.run, status.status))[name] == "stopped" and "done" in set(status.status)


def test_the_same_run_twice_in_a_plan_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"runs \[0, 1\] of the plan are the same run"):
        sweep.run_plan([TINY, {**TINY, "threads": 2}], tmp_path / "runs")
    assert not list((tmp_path / "runs").glob("*/"))


def test_status_of_a_worker_follows_its_exit_and_its_last_step(tmp_path):
    """Stopped at the deadline or exited by itself (a worker sent SIGTERM alone also saves its state and exits 0), a
    run is done only if it reached its last step."""
    stopped = functools.partial(sweep._status, deadline=True)  # the sweep sent SIGTERM
    ended = functools.partial(sweep._status, deadline=False)  # the worker exited by itself
    cfg = T.make_config(**TINY)
    name = T.run_name(cfg)
    (tmp_path / name).mkdir()
    (tmp_path / f"{name}.log").write_text("loading\nValueError: boom\n")
    rows = tmp_path / name / "metrics.jsonl"
    rows.write_text(json.dumps({"step": 10, "eval_loss": 6.0}) + "\n")
    assert stopped(0, name, cfg, tmp_path, 5.0) == ("stopped", 5.0, "deadline; state at step None")
    assert stopped(-9, name, cfg, tmp_path, 5.0)[2].startswith("deadline; killed after the grace period")
    assert ended(0, name, cfg, tmp_path, 5.0) == ("stopped", 5.0, "stopped before the end; state at step None")
    for status in (stopped, ended):
        assert status(1, name, cfg, tmp_path, 5.0) == ("failed", 5.0, "ValueError: boom")
    assert ended(-15, name, cfg, tmp_path, 5.0) == ("stopped", 5.0, "killed by SIGTERM; state at step None")
    rows.write_text(rows.read_text() + json.dumps({"step": cfg["steps"], "eval_loss": 5.0}) + "\n")
    assert stopped(0, name, cfg, tmp_path, 5.0) == ("done", 5.0, "")  # finished just before the deadline
    assert ended(0, name, cfg, tmp_path, 5.0) == ("done", 5.0, "")
    (tmp_path / name / "state.pt").write_text("garbage")  # unreadable: reported, not raised into the sweep
    for status in (stopped, ended):
        assert status(0, name, cfg, tmp_path, 5.0)[0] == "failed"
        assert "run folder unreadable" in status(0, name, cfg, tmp_path, 5.0)[2]


def test_run_plan_reports_a_worker_that_exits_early_as_stopped(tmp_path, monkeypatch):
    """The sweep judges a worker that exits 0 by its run, not by its exit status (here it trains nothing)."""
    real = sweep.subprocess.Popen
    monkeypatch.setattr(sweep.subprocess, "Popen", lambda args, **kw: real([sys.executable, "-c", "pass"], **kw))
    table = sweep.run_plan([TINY], tmp_path / "runs", workers=1, poll=0.05)
    assert table.status.tolist() == ["stopped"] and table.error[0].startswith("stopped before the end")


def test_status_table_drops_runs_an_edited_plan_never_started(tmp_path):
    pd.DataFrame([{"run": "old_done", "status": "done", "seconds": 5.0, "error": ""},
                  {"run": "dropped", "status": "not started", "seconds": 0.0, "error": ""},
                  {"run": "stopped_early", "status": "not started", "seconds": 0.0, "error": ""}]
                 ).to_csv(tmp_path / "sweep_status.csv", index=False)
    (tmp_path / "stopped_early").mkdir()  # a folder exists: it did start once, so its row stays
    table = sweep._write_status({0: ("done", 3.0, "")}, ["new"], tmp_path)
    assert list(table.run) == ["old_done", "stopped_early", "new"], table
    assert pd.read_csv(tmp_path / "sweep_status.csv").run.tolist() == list(table.run)


def test_failed_run_reports_its_error(tmp_path):
    runs = [{**TINY, "corpus_sentences": 10}]  # too small a corpus: fails inside the worker
    table = sweep.run_plan(runs, tmp_path / "runs", workers=1)
    assert table.status.iloc[0] == "failed"
    assert "CorpusError" in table.error.iloc[0] and "corpus_sentences" in table.error.iloc[0]


def test_sas_minus_k_runs_branch_from_sas_minus_and_equal_runs_from_step_0(tmp_path):
    trunk = {**TINY, "lam": 1.0, "suppress_steps": -1}
    kids = [{**TINY, "lam": 1.0, "suppress_steps": k} for k in (10, 15)]
    other = [{**TINY, "lam": 1.0, "suppress_steps": 10, "lr": 1e-3}, {**TINY, "seed": 1, "lam": 1.0, "suppress_steps": 10}]
    assert sweep.branches([*kids, trunk, *other, TINY]) == {0: 2, 1: 2}  # same run up to k, and nothing else
    alone = sweep.run_plan(kids, tmp_path / "alone", workers=2)  # from step 0
    both = sweep.run_plan([*kids, trunk], tmp_path / "both", workers=2)
    assert list(alone.status) == ["done"] * 2 and list(both.status) == ["done"] * 3, both
    log = (tmp_path / "both" / f"{both.run.iloc[2]}.log").read_text()
    assert log.count("forked ") == 2, log
    for name in alone.run:
        a, b = T.read_metrics(tmp_path / "alone" / name), T.read_metrics(tmp_path / "both" / name)
        pd.testing.assert_frame_equal(a.drop(columns="wall"), b.drop(columns="wall"), check_exact=True)
        # a fork carries the metric settings its first rows were logged with (the plan's: here the defaults)
        saved = json.loads((tmp_path / "both" / name / "metric_settings.json").read_text())
        assert saved == experiments.metric_settings()
    # the trunk finished: a new branch has no fork to come and trains from step 0
    k5 = {**TINY, "lam": 1.0, "suppress_steps": 5}
    late = sweep.run_plan([trunk, k5], tmp_path / "both", workers=2).set_index("run").status
    name = T.run_name(T.make_config(**k5))
    assert late[name] == "done" and len(late) == 4  # the table keeps the earlier sweep's rows
    assert "resuming" not in (tmp_path / "both" / f"{name}.log").read_text()
    assert T.read_metrics(tmp_path / "both" / name).step.max() == 20


def test_run_plan_refuses_no_workers_before_starting_anything(tmp_path):
    for workers in (0, -1, 1.5):
        with pytest.raises(ValueError, match=f"workers={workers!r}"):
            sweep.run_plan([{**TINY, "seed": 0}], tmp_path / "runs", workers=workers)
    assert not (tmp_path / "runs").exists()  # nothing created


def test_the_command_line_refuses_a_bad_plan_with_a_message_before_any_worker(tmp_path, capsys, monkeypatch):
    """A plan error is one line naming the file and run, exit status 2, and nothing is created."""
    runs_root = tmp_path / "runs"
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir(), good.mkdir()
    bad, good = write_plan(bad, [TINY, {**TINY, "lr": 5.0}]), write_plan(good, [TINY])
    cases = [  # (argv, what the message must say)
        ([str(bad)], r"bad/plan.json: runs\[1\].*lr"),
        ([str(tmp_path / "missing.json")], "missing.json: cannot read the plan"),
        ([str(good), "--device", "cude"], r"runs\[0\]: parameter device='cude'"),
        ([str(good), "--device", "cuda"], r"runs\[0\] asks for device 'cuda', which this machine lacks"),
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for argv, msg in cases:
        with pytest.raises(SystemExit) as e:
            sweep.main([*argv, "--runs-root", str(runs_root)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and re.search(msg, err) and "Traceback" not in err, (argv, err)
    assert not runs_root.exists()
