"""sasutils.sweep: plans are validated before any compute; runs go in parallel; a deadline stops the
runs still going and keeps their logs; a second sweep skips finished runs and keeps the status rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import sasutils.train as T
from sasutils import sweep

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


def test_runs_in_parallel_then_skips_finished(tmp_path):
    runs = [{**TINY, "seed": 0}, {**TINY, "seed": 1, "lam": 1.0, "suppress_steps": 10, "lr_schedule": "constant"}]
    table = sweep.run_plan(runs, tmp_path / "runs", workers=2)
    assert list(table.status) == ["done", "done"], table
    for p in runs:
        q = dict(p)
        name = T.run_name(T.make_config(q.pop("preset"), **q))
        log = T.read_metrics(tmp_path / "runs" / name)
        assert log.step.max() == 20
    again = sweep.run_plan(runs, tmp_path / "runs", workers=2)
    assert list(again.status) == ["done", "done"]
    assert again.seconds.max() < table.seconds.max() + 30  # finished runs are read, not retrained


def test_deadline_stops_runs_and_keeps_their_logs(tmp_path):
    long = {**TINY, "steps": 100_000, "eval_every": 5}
    runs = [long, {**TINY, "seed": 3}]
    table = sweep.run_plan(runs, tmp_path / "runs", workers=1, deadline=25)
    assert list(table.status) == ["stopped", "not started"], table
    name = table.run.iloc[0]
    assert len(T.read_metrics(tmp_path / "runs" / name)) >= 1  # the log so far is kept
    status = pd.read_csv(tmp_path / "runs" / "sweep_status.csv", keep_default_na=False)
    assert set(status.run) == set(table.run)
    # a later sweep of one run keeps the other rows
    sweep.run_plan([{**TINY, "seed": 3}], tmp_path / "runs", workers=1)
    status = pd.read_csv(tmp_path / "runs" / "sweep_status.csv", keep_default_na=False)
    assert dict(zip(status.run, status.status))[name] == "stopped" and "done" in set(status.status)


def test_failed_run_reports_its_error(tmp_path):
    runs = [{**TINY, "corpus_sentences": 10}]  # too small a corpus: fails inside the worker
    table = sweep.run_plan(runs, tmp_path / "runs", workers=1)
    assert table.status.iloc[0] == "failed"
    assert "CorpusError" in table.error.iloc[0] and "corpus_sentences" in table.error.iloc[0]
