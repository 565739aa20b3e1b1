"""experiments: helpers over runs' metrics tables."""

import json

import numpy as np
import pandas as pd
import pytest

from sasutils import experiments


def test_wall_minutes_takes_each_runs_last_wall_across_tables():
    a = pd.DataFrame({"run": ["r1", "r1", "r2"], "step": [0, 10, 0], "wall": [30.0, 120.0, np.nan]})
    b = pd.DataFrame({"run": ["r2", "r3"], "step": [10, 10], "wall": [600.0, np.nan]})
    got = experiments.wall_minutes(a, b)
    assert got.to_dict() == pytest.approx({"r1": 2.0, "r2": 10.0})  # r3 never logged a wall time: absent


def test_collect_lists_options_added_later_at_their_defaults(tmp_path):
    from sasutils import train as T

    for name, extra in [("old", {}), ("new", {"ln_placement": "pre"})]:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"steps": 10, "seed": 0, **extra}))
        (d / "metrics.jsonl").write_text(json.dumps({"step": 10, "eval_loss": 6.0}) + "\n")
    logs, configs = experiments.collect(tmp_path)
    got = configs.set_index("run")
    assert got.loc["old", "ln_placement"] == T.LATER_DEFAULTS["ln_placement"] == "post"  # ran before the option
    assert got.loc["new", "ln_placement"] == "pre" and bool(got.loc["new", "finished"])
