"""experiments: helpers over runs' metrics tables."""

import numpy as np
import pandas as pd
import pytest

from sasutils import experiments


def test_wall_minutes_takes_each_runs_last_wall_across_tables():
    a = pd.DataFrame({"run": ["r1", "r1", "r2"], "step": [0, 10, 0], "wall": [30.0, 120.0, np.nan]})
    b = pd.DataFrame({"run": ["r2", "r3"], "step": [10, 10], "wall": [600.0, np.nan]})
    got = experiments.wall_minutes(a, b)
    assert got.to_dict() == pytest.approx({"r1": 2.0, "r2": 10.0})  # r3 never logged a wall time: absent
