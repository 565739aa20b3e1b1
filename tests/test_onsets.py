"""Known-answer tests for sasutils.onsets (phase-transition detection on non-uniform steps)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sasutils import onsets as O

# Checkpoint grid: log-spaced early, then every 250 steps up to 6000 (the regular interval H).
STEPS = np.array([0, 10, 20, 50, 100, 200, 300, 500, 750, 1000] + list(range(1250, 6001, 250)), float)
H = 250.0
C, W, LO, AMP = 3000.0, 200.0, 0.1, 0.3
K = math.log(2 + math.sqrt(3))  # logistic σ((x-c)/w): y'' peaks at c - w·K, bottoms at c + w·K
TRUE_START, TRUE_END = C - W * K, C + W * K  # 2736.6, 3263.4


def sigmoid(x, c=C, w=W, lo=LO, amp=AMP):
    return lo + amp / (1.0 + np.exp(-(np.asarray(x, float) - c) / w))


# Loss logged every 50 steps: plateau, then a 1.5-nat logistic drop centred at 3500 (width 150).
LSTEPS = np.arange(0.0, 6001.0, 50.0)
DROP_C, DROP_W, DROP_NATS = 3500.0, 150.0, 1.5


def plateau_drop_loss(x, c=DROP_C, w=DROP_W, nats=DROP_NATS):
    x = np.asarray(x, float)
    return 6.0 - nats / (1.0 + np.exp(-(x - c) / w)) - 1e-5 * x


# ---------------------------------------------------------------------------------------------
# The acceleration rule itself
# ---------------------------------------------------------------------------------------------


def test_three_point_second_difference_is_exact_for_a_quadratic_on_uneven_steps():
    x = np.array([0, 3, 10, 11, 30, 70, 71, 200.0])
    xs, a = O.acceleration_curve(x, 0.5 * x**2 - 4 * x + 1, smooth=0)
    np.testing.assert_array_equal(xs, x[1:-1])
    np.testing.assert_allclose(a, 1.0, rtol=1e-12)
    # against the formula written out
    y = np.sin(x / 40)
    _, a = O.acceleration_curve(x, y, smooth=0)
    k = np.arange(1, x.size - 1)
    d2 = 2 * ((y[k + 1] - y[k]) / (x[k + 1] - x[k]) - (y[k] - y[k - 1]) / (x[k] - x[k - 1])) / (x[k + 1] - x[k - 1])
    np.testing.assert_allclose(a, d2, rtol=1e-12)


def test_smoothed_acceleration_of_a_quadratic_is_its_second_derivative_inside():
    x = np.arange(0.0, 5001.0, 100.0)
    xs, a = O.acceleration_curve(x, 3e-4 * x**2, smooth=1)  # y'' = 6e-4
    inside = (xs > 1000) & (xs < 4000)  # odd reflection makes a -> 0 at the ends
    np.testing.assert_allclose(a[inside], 6e-4, rtol=1e-3)
    # the smoothed slope is the derivative: 6e-4 x
    xs, s = O.slope_curve(x, 3e-4 * x**2, smooth=1)
    np.testing.assert_allclose(s[inside], 6e-4 * xs[inside], rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# Structure / capabilities onsets
# ---------------------------------------------------------------------------------------------


def test_sigmoid_onsets_unsmoothed_land_on_nearest_checkpoints():
    u = sigmoid(STEPS)
    assert O.structure_onset(STEPS, u, smooth=0) == 2750.0
    assert O.capabilities_onset(STEPS, u, smooth=0) == 3250.0


@pytest.mark.parametrize("c,w", [(3000.0, 200.0), (2200.0, 150.0), (4500.0, 300.0)])
def test_sigmoid_onsets_within_one_interval_of_analytic(c, w):
    u = sigmoid(STEPS, c=c, w=w)
    for smooth in (0, 1):
        s = O.structure_onset(STEPS, u, smooth=smooth)
        e = O.capabilities_onset(STEPS, u, smooth=smooth)
        assert abs(s - (c - w * K)) <= H, (smooth, s)
        assert abs(e - (c + w * K)) <= H, (smooth, e)
        assert s < c < e


def test_default_smoothing_is_symmetric_and_biased_outward_by_less_than_an_interval():
    u = sigmoid(STEPS)
    s, e = O.structure_onset(STEPS, u), O.capabilities_onset(STEPS, u)
    assert abs((s + e) / 2 - C) <= 1.0
    assert TRUE_START - H < s < TRUE_START  # smoothing widens the spike: earlier start ...
    assert TRUE_END < e < TRUE_END + H  # ... and later end


def test_step_curve_onset_at_the_step():
    y = np.where(STEPS >= 3000, 0.4, 0.1)  # jumps between checkpoints 2750 and 3000
    assert O.structure_onset(STEPS, y, smooth=0) == 2750.0  # last point before the rise
    assert O.capabilities_onset(STEPS, y, smooth=0) == 3000.0  # first point after it
    assert 2750.0 - H <= O.structure_onset(STEPS, y) <= 2750.0
    assert 3000.0 <= O.capabilities_onset(STEPS, y) <= 3000.0 + H
    # a step inside the log-spaced early part (between checkpoints 100 and 200)
    y = np.where(STEPS >= 150, 0.4, 0.1)
    assert O.structure_onset(STEPS, y, smooth=0) == 100.0
    assert O.capabilities_onset(STEPS, y, smooth=0) == 200.0


@pytest.mark.parametrize("seed", range(8))
def test_noise_moves_smoothed_onsets_by_at_most_one_interval(seed):
    clean = sigmoid(STEPS)
    noisy = clean + np.random.default_rng(seed).normal(0, 0.005, STEPS.size)
    for f in (O.structure_onset, O.capabilities_onset):
        assert abs(f(STEPS, noisy) - f(STEPS, clean)) <= H


def test_without_smoothing_noise_at_dense_early_checkpoints_wins():
    # why smoothing is on by default: the raw second difference scales like noise / gap²
    hits = [O.structure_onset(STEPS, sigmoid(STEPS) + np.random.default_rng(s).normal(0, 0.005, STEPS.size),
                              smooth=0) for s in range(8)]
    assert min(hits) < 1000


def test_step_range_restricts_the_search():
    u = sigmoid(STEPS) + sigmoid(STEPS, c=5000, w=250, lo=0, amp=0.1)  # a second, gentler rise
    assert abs(O.structure_onset(STEPS, u, smooth=0) - TRUE_START) <= H
    s2 = O.structure_onset(STEPS, u, smooth=0, step_range=(4000, None))
    assert abs(s2 - (5000 - 250 * K)) <= H


def test_flat_curve_has_no_onsets():
    y = np.full(STEPS.size, 0.2)
    assert math.isnan(O.structure_onset(STEPS, y))
    assert math.isnan(O.capabilities_onset(STEPS, y))


# ---------------------------------------------------------------------------------------------
# Loss drop window and the alternative-strategy onset
# ---------------------------------------------------------------------------------------------


def test_loss_drop_window_unsmoothed_matches_analytic_window():
    loss = plateau_drop_loss(LSTEPS)
    d = O.loss_drop_window(LSTEPS, loss, smooth=0)
    # slope >= 1/3 of its peak where 4p(1-p) >= 1/3: z = ±ln((1+√(2/3))/(1-√(2/3))) = ±2.292
    z = math.log((1 + math.sqrt(2 / 3)) / (1 - math.sqrt(2 / 3)))
    assert abs(d.start - (DROP_C - DROP_W * z)) <= 50
    assert abs(d.end - (DROP_C + DROP_W * z)) <= 50
    exp_drop = float(plateau_drop_loss(d.start) - plateau_drop_loss(d.end))
    assert d.drop_nats == pytest.approx(exp_drop, abs=1e-9)
    assert d.drop_nats == pytest.approx(DROP_NATS * math.sqrt(2 / 3), abs=0.04)  # 81.6 % of the drop
    assert d.drop_frac == pytest.approx(d.drop_nats / (loss[0] - loss[-1]), rel=1e-12)
    assert abs(d.peak_step - DROP_C) <= 50


def test_loss_drop_window_smoothed_contains_the_drop():
    loss = plateau_drop_loss(LSTEPS) + np.random.default_rng(0).normal(0, 0.01, LSTEPS.size)
    d = O.loss_drop_window(LSTEPS, loss)
    assert 3000 < d.start < DROP_C < d.end < 4000
    assert 1.15 < d.drop_nats < DROP_NATS + 0.05
    d2 = O.loss_drop_window(LSTEPS, loss, frac=0.5)
    assert d.start < d2.start and d2.end < d.end and d2.drop_nats < d.drop_nats


def test_loss_drop_window_skips_initial_descent_with_step_range():
    loss = plateau_drop_loss(LSTEPS) + 4.0 * np.exp(-LSTEPS / 100)
    assert O.loss_drop_window(LSTEPS, loss).start < 500  # the initial descent is steepest
    d = O.loss_drop_window(LSTEPS, loss, step_range=(1000, None))
    assert 3000 < d.start < DROP_C < d.end < 4000


def test_dense_noisy_loss_needs_sigma_in_steps_per_metric():
    x = np.arange(0.0, 20001.0, 10.0)
    loss = plateau_drop_loss(x, c=12000.0, w=500.0) + np.random.default_rng(4).normal(0, 0.05, x.size)
    uas = sigmoid(STEPS)
    default = O.detect_onsets(None, loss=loss, uas=uas, loss_steps=x, uas_steps=STEPS)
    assert default["loss_drop_nats"] < 0.5  # σ = one 10-step gap: a noise blip wins
    r = O.detect_onsets(None, loss=loss, uas=uas, loss_steps=x, uas_steps=STEPS, sigma={"loss": 400})
    assert 10500 < r["loss_drop_start"] < 12000 < r["loss_drop_end"] < 13500
    assert 1.0 < r["loss_drop_nats"] < DROP_NATS + 0.2
    assert r["structure_onset"] == default["structure_onset"]  # UAS keeps the default smoothing


def test_loss_that_never_decreases_has_no_window():
    d = O.loss_drop_window(LSTEPS, 1.0 + 1e-4 * LSTEPS)
    assert all(math.isnan(v) for v in d)


def test_alt_strategy_onset_found_with_flat_uas():
    loss = plateau_drop_loss(LSTEPS)
    uas = 0.1 + np.random.default_rng(3).normal(0, 0.003, STEPS.size)
    got = O.alt_strategy_onset(LSTEPS, loss, uas, uas_steps=STEPS)
    assert got == O.loss_drop_window(LSTEPS, loss).start
    assert 3000 < got < DROP_C


def test_alt_strategy_onset_none_when_uas_rises_or_drop_small():
    loss = plateau_drop_loss(LSTEPS)
    rising = sigmoid(STEPS, c=DROP_C)  # UAS spike concurrent with the drop (SAS+ run)
    assert O.alt_strategy_onset(LSTEPS, loss, rising, uas_steps=STEPS) is None
    flat = np.full(STEPS.size, 0.1)
    small = plateau_drop_loss(LSTEPS, nats=0.05)
    assert O.alt_strategy_onset(LSTEPS, small, flat, uas_steps=STEPS) is None
    assert O.alt_strategy_onset(LSTEPS, small, flat, uas_steps=STEPS, min_drop=0.02) is not None


# ---------------------------------------------------------------------------------------------
# detect_onsets
# ---------------------------------------------------------------------------------------------


def test_detect_onsets_flat_dict():
    loss = plateau_drop_loss(LSTEPS, c=C)
    uas = sigmoid(STEPS)
    r = O.detect_onsets(None, loss=loss, uas=uas, loss_steps=LSTEPS, uas_steps=STEPS)
    assert tuple(r) == O.ONSET_KEYS
    assert r["structure_onset"] == O.structure_onset(STEPS, uas)
    assert r["capabilities_onset"] == O.capabilities_onset(STEPS, uas)
    # UAS(capabilities) - UAS(structure): 77 % of the 0.3 rise with the default smoothing's wider onsets
    expected = sigmoid(r["capabilities_onset"]) - sigmoid(r["structure_onset"])
    assert r["uas_rise"] == pytest.approx(expected, abs=0.01) and 0.2 < r["uas_rise"] < AMP
    assert r["loss_drop_start"] < C < r["loss_drop_end"]
    assert 0.15 < r["uas_rise_during_drop"] < AMP  # smoothed UAS over the drop window
    assert math.isnan(r["alt_strategy_onset"])
    only_uas = O.detect_onsets(STEPS, uas=uas)
    assert math.isnan(only_uas["loss_drop_start"]) and only_uas["structure_onset"] == r["structure_onset"]


def test_detect_onsets_min_uas_rise_blanks_spikeless_runs():
    flat = 0.1 + np.random.default_rng(0).normal(0, 0.003, STEPS.size)
    assert np.isfinite(O.detect_onsets(STEPS, uas=flat)["structure_onset"])  # argmax of noise
    r = O.detect_onsets(STEPS, uas=flat, min_uas_rise=0.05)
    assert math.isnan(r["structure_onset"]) and math.isnan(r["capabilities_onset"])
    assert np.isfinite(O.detect_onsets(STEPS, uas=sigmoid(STEPS), min_uas_rise=0.05)["structure_onset"])


# ---------------------------------------------------------------------------------------------
# Bootstrap intervals
# ---------------------------------------------------------------------------------------------


def _population_curve(sd_c: float) -> np.ndarray:
    """E over centres c ~ N(C, sd_c) of the sigmoid (Gauss-Hermite quadrature)."""
    t, wts = np.polynomial.hermite_e.hermegauss(40)
    return sum(wi * sigmoid(STEPS, c=C + sd_c * ti) for ti, wi in zip(t, wts)) / wts.sum()


def test_bootstrap_over_seeds_contains_true_onsets():
    rng = np.random.default_rng(11)
    sd_c = 100.0
    curves = [sigmoid(STEPS, c=C + rng.normal(0, sd_c)) + rng.normal(0, 0.003, STEPS.size) for _ in range(8)]
    iv = O.bootstrap_interval(STEPS, uas=curves, over="seeds", n_boot=300, level=0.95, seed=1)
    assert set(iv) == {"structure_onset", "capabilities_onset"}
    pop = _population_curve(sd_c)
    for name, f in (("structure_onset", O.structure_onset), ("capabilities_onset", O.capabilities_onset)):
        truth = f(STEPS, pop)  # the estimand: same rule on the expected curve
        lo, hi = iv[name]
        assert lo <= truth <= hi, (name, lo, truth, hi)
        assert 0 < hi - lo < 2 * H
    assert abs(O.structure_onset(STEPS, pop) - TRUE_START) <= H
    again = O.bootstrap_interval(STEPS, uas=curves, over="seeds", n_boot=300, level=0.95, seed=1)
    assert again == iv


def test_bootstrap_over_items_contains_true_onset_and_narrows_with_level():
    rng = np.random.default_rng(5)
    n_items = 200
    items = sigmoid(STEPS)[:, None] + rng.normal(0, 0.05, (STEPS.size, n_items))  # (n_steps, n_items)
    iv95 = O.bootstrap_interval(STEPS, uas=items, over="items", n_boot=300, level=0.95, seed=0)
    iv50 = O.bootstrap_interval(STEPS, uas=items, over="items", n_boot=300, level=0.50, seed=0)
    truth = O.structure_onset(STEPS, sigmoid(STEPS))
    assert iv95["structure_onset"][0] <= truth <= iv95["structure_onset"][1]
    assert iv95["structure_onset"][0] <= iv50["structure_onset"][0] <= iv50["structure_onset"][1]
    assert iv50["structure_onset"][1] <= iv95["structure_onset"][1]


def test_bootstrap_pairs_loss_and_uas_seeds():
    rng = np.random.default_rng(2)
    loss = [plateau_drop_loss(LSTEPS) + rng.normal(0, 0.01, LSTEPS.size) for _ in range(5)]
    uas = [0.1 + rng.normal(0, 0.003, STEPS.size) for _ in range(5)]
    iv = O.bootstrap_interval(None, loss=loss, uas=uas, loss_steps=LSTEPS, uas_steps=STEPS,
                              n_boot=100, onsets=["alt_strategy_onset", "loss_drop_start"])
    lo, hi = iv["alt_strategy_onset"]
    assert 3000 < lo <= hi < DROP_C
    with pytest.raises(ValueError, match="same number of seeds"):
        O.bootstrap_interval(None, loss=loss, uas=uas[:4], loss_steps=LSTEPS, uas_steps=STEPS, n_boot=10)


# ---------------------------------------------------------------------------------------------
# onset_table
# ---------------------------------------------------------------------------------------------


def _tidy_table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for variant in ("SAS+", "SAS-"):
        for seed in (0, 1):
            loss = plateau_drop_loss(LSTEPS, c=C if variant == "SAS+" else 4000.0)
            uas = sigmoid(STEPS) if variant == "SAS+" else 0.1 + rng.normal(0, 0.003, STEPS.size)
            uas_at = dict(zip(STEPS, uas))
            for s in np.union1d(LSTEPS, STEPS):  # loss every 50 steps, UAS at checkpoints, NaN elsewhere
                rows.append({"variant": variant, "seed": seed, "step": s,
                             "loss": float(plateau_drop_loss(s, c=C if variant == "SAS+" else 4000.0))
                             if s in set(LSTEPS) else np.nan,
                             "uas": uas_at.get(s, np.nan)})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter


def test_onset_table_one_row_per_group():
    df = _tidy_table()
    t = O.onset_table(df, min_uas_rise=0.05)
    assert list(t.columns[:4]) == ["variant", "seed", "n_uas", "n_loss"]
    assert len(t) == 4 and (t["n_uas"] == STEPS.size).all() and (t["n_loss"] == LSTEPS.size).all()
    plus = t[t.variant == "SAS+"].iloc[0]
    assert plus["structure_onset"] == O.structure_onset(STEPS, sigmoid(STEPS))
    assert math.isnan(plus["alt_strategy_onset"])
    minus = t[t.variant == "SAS-"]
    assert minus["structure_onset"].isna().all()
    assert ((minus["alt_strategy_onset"] > 3500) & (minus["alt_strategy_onset"] < 4000)).all()
    one = O.onset_table(df[df.variant == "SAS+"], by=["variant", "seed"], uas=None)
    assert one["structure_onset"].isna().all() and one["loss_drop_start"].notna().all()


def test_onset_table_duplicate_steps_name_the_group():
    df = _tidy_table()
    with pytest.raises(ValueError, match=r"variant='SAS\+'.*appears more than once"):
        O.onset_table(df, by="variant")


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps,values,match",
    [
        ([0, 1, 2, 2, 4, 5], [0, 0, 0, 1, 1, 1], "steps must be strictly increasing"),
        ([0, 1, 3, 2, 4, 5], [0, 0, 0, 1, 1, 1], "steps must be strictly increasing"),
        ([0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 1], "uas has 5 values but steps has 6"),
        ([0, 1, 2, 3], [0, 0, 1, 1], "at least 5 points"),
        ([0, 1, 2, 3, 4, 5], [0, 0, np.nan, 1, 1, 1], "uas contains non-finite"),
        ([0, 1, 2, np.inf, 4, 5], [0, 0, 0, 1, 1, 1], "steps contains non-finite"),
        ([[0, 1, 2, 3, 4]], [0, 0, 0, 1, 1], "steps must be 1-D"),
        ([0, 1, 2, 3, 4, 5], ["a", 0, 0, 1, 1, 1], "uas must be numeric"),
    ],
)
def test_bad_curves_raise_naming_the_parameter(steps, values, match):
    with pytest.raises(ValueError, match=match):
        O.structure_onset(steps, values)


def test_bad_options_raise():
    u = sigmoid(STEPS)
    with pytest.raises(ValueError, match="smooth"):
        O.structure_onset(STEPS, u, smooth=-1)
    with pytest.raises(ValueError, match="sigma"):
        O.structure_onset(STEPS, u, sigma=float("nan"))
    with pytest.raises(ValueError, match="frac"):
        O.loss_drop_window(LSTEPS, plateau_drop_loss(LSTEPS), frac=1.5)
    with pytest.raises(ValueError, match="step_range"):
        O.structure_onset(STEPS, u, step_range=(7000, 8000))
    with pytest.raises(ValueError, match="step_range"):
        O.structure_onset(STEPS, u, step_range=(5, 1))
    with pytest.raises(ValueError, match="loss_steps"):
        O.detect_onsets(STEPS, loss=plateau_drop_loss(LSTEPS), loss_steps=LSTEPS[::-1])
    with pytest.raises(ValueError, match=r"shape \(n_seeds, 30\)"):
        O.bootstrap_interval(STEPS, uas=np.zeros((3, 10)))
    with pytest.raises(ValueError, match=r"shape \(30, n_items\)"):
        O.bootstrap_interval(STEPS, uas=np.zeros((10, 3)), over="items")
    with pytest.raises(ValueError, match="level"):
        O.bootstrap_interval(STEPS, uas=[u, u], level=95)
    with pytest.raises(ValueError, match="over"):
        O.bootstrap_interval(STEPS, uas=[u, u], over="runs")
    with pytest.raises(ValueError, match="unknown detect_onsets"):
        O.bootstrap_interval(STEPS, uas=[u, u], smoth=1)
    with pytest.raises(ValueError, match="step column"):
        O.onset_table(pd.DataFrame({"uas": u}))


def test_loss_bend_window_ignores_the_initial_decay():
    """A convex initial decay, a plateau, then a logistic drop of 0.8 nats centred at 3000."""
    from sasutils.onsets import loss_bend_window, transition_report

    steps = np.array([0, 10, 20, 50, 100, 200, 250] + list(range(500, 6001, 250)), float)
    loss = 6.5 + 2.5 * np.exp(-steps / 120) - 0.8 / (1 + np.exp(-(steps - 3000) / 150))
    start, end, nats = loss_bend_window(steps, loss, step_range=(600, None))
    assert 2500 <= start <= 3000 <= end <= 3500
    assert 0.5 < nats < 0.8
    uas = 0.1 + 0.25 / (1 + np.exp(-(steps - 3000) / 150))
    rep = transition_report(pd.DataFrame({"step": steps, "eval_loss": loss, "sas_uas": uas,
                                          "offset_best": 0.3}))
    assert rep["drop_ok"] and rep["uas_ok"] and rep["beats_offset"] and rep["onset_ok"]
    assert rep["loss_final"] == pytest.approx(loss[-1]) and rep["uas_final"] == pytest.approx(uas[-1])
    assert "beats_edge" not in rep  # no edge-rule baseline logged
    edge = transition_report(pd.DataFrame({"step": steps, "eval_loss": loss, "sas_uas": uas, "offset_best": 0.3,
                                           "offset_edge_best": 0.36}))
    assert edge["beats_offset"] and not edge["beats_edge"] and edge["offset_edge"] == 0.36
    flat = transition_report(pd.DataFrame({"step": steps, "eval_loss": 6.5 + 2.5 * np.exp(-steps / 120),
                                           "sas_uas": 0.1 + 0 * steps}))
    assert not flat["drop_ok"] and not flat["uas_ok"]


def test_transition_report_smooths_the_bend_like_the_onsets():
    """A σ given to transition_report sets the loss-bend rule's σ too, not only the onsets'."""
    from sasutils.onsets import loss_bend_window, structure_onset, transition_report

    steps = np.arange(0, 5001, 125, dtype=float)
    loss = 6.5 + 2.5 * np.exp(-steps / 120) - 0.8 / (1 + np.exp(-(steps - 2500) / 100))
    uas = 0.1 + 0.25 / (1 + np.exp(-(steps - 2400) / 100))
    log = pd.DataFrame({"step": steps, "eval_loss": loss, "sas_uas": uas})
    for sigma in (125.0, 500.0):
        rep = transition_report(log, sigma=sigma)
        bend = loss_bend_window(steps, loss, sigma=sigma, step_range=(500, None))
        assert rep["bend_start"] == pytest.approx(bend[0]) and rep["bend_end"] == pytest.approx(bend[1])
        assert rep["structure_onset"] == pytest.approx(structure_onset(steps, uas, sigma=sigma, step_range=(500, None)))
    # wider smoothing moves the start of the bend earlier (the caveat in the module docstring)
    assert transition_report(log, sigma=500.0)["bend_start"] < transition_report(log, sigma=125.0)["bend_start"]


def test_timing_places_the_structure_onset_in_the_loss_drop():
    from sasutils.onsets import CRITERIA, timing

    rep = pd.DataFrame({"structure_onset": [1000.0, 1200.0], "capabilities_onset": [1600.0, 1700.0],
                        "bend_start": [1250.0, 1100.0], **{c: [True, True] for c in CRITERIA}})
    rep.loc[1, ["uas_ok", "blimp_ok"]] = False
    t = timing(rep)
    assert list(t.lead) == [250.0, -100.0] and list(t.width) == [600.0, 500.0]
    assert list(t.lead_frac) == pytest.approx([250 / 600, -100 / 500])
    assert list(t.all_ok) == [True, False] and list(t.misses) == ["", "uas_ok, blimp_ok"]
    assert "lead" not in rep  # a copy
    assert "all_ok" not in timing(rep.drop(columns="onset_ok"))  # verdicts only where every criterion is there
    short = rep.astype({c: object for c in O.CRITERIA})
    short.loc[0, list(O.CRITERIA)] = None  # a run too short to judge: no verdicts
    assert not timing(short).all_ok[0] and timing(short).misses[0] == ", ".join(O.CRITERIA)


def test_miss_counts_names_each_failing_criterion_once():
    from sasutils.onsets import CRITERIA, miss_counts

    rep = pd.DataFrame({c: [True, True, True] for c in CRITERIA})
    assert miss_counts(rep) == "none"
    rep.loc[[0, 2], "uas_ok"] = False
    rep.loc[1, "onset_ok"] = False
    assert miss_counts(rep) == "uas_ok in 2; onset_ok in 1"  # in the order of CRITERIA


def test_criteria_table_counts_each_criterion_and_takes_medians_per_group():
    from sasutils.onsets import CRITERIA, criteria_table

    rep = pd.DataFrame({"setting": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0],
                        "structure_onset": [1000.0, 900.0, 1200.0, 500.0], "bend_start": [1250.0, 1250.0, 1250.0, 800.0],
                        "uas_before": [0.16, 0.14, 0.18, 0.12], "uas_after": [0.31, 0.33, 0.32, 0.29],
                        "capabilities_onset": [1500.0] * 4, **{c: [True] * 4 for c in CRITERIA}})
    rep.loc[[0, 2], "uas_ok"] = False
    rep["blimp_ok"] = [True, True, True, None]  # no reading: not met
    t = criteria_table(rep, "setting").set_index("setting")
    assert list(t.index) == ["a", "b"] and t.runs.tolist() == [3, 1]
    assert t.uas_ok.tolist() == [1, 1] and t.blimp_ok.tolist() == [3, 0] and t.drop_ok.tolist() == [3, 1]
    assert t.all_ok.tolist() == [1, 0]
    assert t.loc["a", "structure_onset"] == 1000.0 and t.loc["a", "lead"] == 250.0 and t.loc["b", "lead"] == 300.0
    assert t.loc["a", "uas_before"] == pytest.approx(0.16) and t.loc["a", "uas_after"] == pytest.approx(0.32)
    assert "finished" not in t and criteria_table(rep.assign(finished=[True, False, True, True]), "setting").finished.tolist() == [2, 1]
    two = criteria_table(rep, ["setting", "seed"])
    assert len(two) == 4 and set(two.columns) >= {"setting", "seed", "runs", "all_ok"}
    with pytest.raises(ValueError, match="uas_after"):
        criteria_table(rep.drop(columns="uas_after"), "setting")


def test_never_left_plateau_needs_both_the_loss_and_sas():
    reports = pd.DataFrame({"loss_final": [6.34, 6.34, 5.0, 6.05], "uas_final": [0.12, 0.32, 0.12, 0.20]})
    assert O.never_left_plateau(reports).tolist() == [True, False, False, False]
    assert O.never_left_plateau(reports, loss_above=6.0, sas_below=0.25).tolist() == [True, False, False, True]


def test_restated_criteria_read_sas_strictly_before_and_widen_the_onset_rule():
    from sasutils.onsets import CRITERIA, restated_criteria, timing

    steps = np.arange(0, 2001, 250.0)
    logs = pd.concat([
        pd.DataFrame({"run": "on", "step": steps, "sas_uas": [0.1, 0.13, 0.14, 0.14, 0.17, 0.25, 0.31, 0.32, 0.32]}),
        pd.DataFrame({"run": "off", "step": steps, "sas_uas": [0.1, 0.13, 0.14, 0.16, 0.17, 0.25, 0.31, 0.32, 0.32]}),
        pd.DataFrame({"run": "far", "step": steps, "sas_uas": 0.12})])
    rep = timing(pd.DataFrame({
        "run": ["on", "off", "far"], "structure_onset": [1000.0, 937.5, 562.5], "bend_start": [1187.5, 1343.75, 1125.0],
        "capabilities_onset": [1600.0] * 3, "eval_interval": 250.0,
        "uas_before": [0.17, 0.16, 0.12], "uas_after": [0.32, 0.32, 0.31], **{c: [True] * 3 for c in CRITERIA}}))
    rep.loc[0, "uas_ok"] = rep.loc[1, "uas_ok"] = False  # what transition_report says of SAS 0.17 / 0.16 before
    rep.loc[[1, 2], "onset_ok"] = False  # leads of 406 and 563 steps
    out = restated_criteria(rep, logs)
    # ▲ at step 1,000 is an evaluation step: its reading (0.17) counted as before; one interval earlier is 0.14
    assert list(out.on_reading) == [True, False, False]
    assert list(out.uas_before_strict) == [0.14, 0.16, 0.12]  # elsewhere the reading transition_report took
    assert list(out.uas_ok_strict) == [True, False, True] and list(out.all_ok_strict) == [True, False, False]
    assert list(out.onset_ok_2x) == [True, True, False]  # |lead| <= 500
    assert list(out.all_ok_2x) == [False, False, False]  # "on" misses uas_ok, "off" uas_ok, "far" the wider rule
    assert "on_reading" not in rep  # a copy


def test_before_thresholds_move_only_the_limit_on_sas_before():
    from sasutils.onsets import CRITERIA, before_thresholds

    logs = pd.DataFrame({"run": ["a", "a", "b", "b", "c", "c"], "step": [0, 250, 0, 250, 0, 250],
                         "sas_uas": [0.095, 0.16, 0.10, 0.14, 0.12, 0.15]})
    rep = pd.DataFrame({"run": ["a", "b", "c"], "uas_before": [0.16, 0.14, 0.15], "uas_after": [0.31, 0.33, 0.29],
                        **{c: [True] * 3 for c in CRITERIA}})
    rep["uas_ok"] = [False, True, False]  # as transition_report says: 0.16 before; 0.29 after
    rep.loc[1, "onset_ok"] = False
    out = before_thresholds(rep, logs, before_max=(0.15, 0.16), rise_max=(0.05, 0.07))
    at = out.set_index(["kind", "limit", "run"])
    assert at.loc[("before", 0.15)].uas_ok.tolist() == rep.uas_ok.tolist()  # the issue's limit: the verdict as is
    assert at.loc[("before", 0.16)].uas_ok.tolist() == [True, True, False]  # c still misses "0.30 after"
    assert at.loc[("before", 0.16)].all_ok.tolist() == [True, False, False]  # b misses the onset rule
    assert at.loc[("rise", 0.05)].value.tolist() == pytest.approx([0.065, 0.04, 0.03])
    assert at.loc[("rise", 0.05)].uas_ok.tolist() == [False, True, False]
    assert at.loc[("rise", 0.07)].all_ok.tolist() == [True, False, False]
    assert at.loc[("rise", 0.05)].sas_0.tolist() == [0.095, 0.10, 0.12]
    with pytest.raises(ValueError, match="step 0 in the logs of b"):
        before_thresholds(rep, logs[~((logs.run == "b") & (logs.step == 0))])


def test_before_thresholds_at_the_issues_limit_are_transition_reports_verdicts():
    from sasutils.onsets import before_thresholds, report_table, timing

    steps = np.arange(0, 5001, 125, dtype=float)
    loss = 6.5 + 2.5 * np.exp(-steps / 120) - 0.8 / (1 + np.exp(-(steps - 2500) / 100))
    runs = {"low": 0.10, "high": 0.16}  # SAS before the spike
    blimp = 0.5 + 0.1 / (1 + np.exp(-(steps - 3000) / 100))  # rises after the spike
    logs = pd.concat([pd.DataFrame({"run": r, "step": steps, "eval_loss": loss, "offset_best": 0.3, "blimp_mean": blimp,
                                    "sas_uas": b + 0.25 / (1 + np.exp(-(steps - 2400) / 100))})
                      for r, b in runs.items()]
                     + [pd.DataFrame({"run": "flat", "step": steps, "eval_loss": 6.5 + 0 * steps, "offset_best": 0.3,
                                      "blimp_mean": 0.5, "sas_uas": 0.12})])  # no transition: nothing to read
    rep = timing(report_table(logs))
    out = before_thresholds(rep, logs, before_max=(0.15, 0.5), rise_max=(1.0,)).set_index(["kind", "limit", "run"])
    assert rep.set_index("run").all_ok.to_dict() == {"low": True, "high": False, "flat": False}  # as built
    at = out.loc[("before", 0.15)].loc[rep.run]
    assert at.uas_ok.tolist() == rep.uas_ok.astype(bool).tolist() and at.all_ok.tolist() == rep.all_ok.tolist()
    assert not out.loc[(slice(None), slice(None), "flat"), "uas_ok"].any()  # no reading before or after: never met
    assert out.loc[("before", 0.5, "high")].all_ok and not out.loc[("before", 0.15, "high")].all_ok


def test_soft_onsets_read_the_structure_onset_on_the_soft_score():
    from sasutils.onsets import soft_onsets, structure_onset

    steps = np.arange(0, 3001, 125.0)
    soft = 0.05 + 0.2 / (1 + np.exp(-(steps - 1500) / 100))  # sharpens late: its ▲ sits before 1,500
    early = 0.05 + 0.2 / (1 + np.exp(-(steps - 250) / 100))  # rises in the first 10 % of the run
    uas = 0.1 + steps / 10000  # argmax SAS: 0.2 at step 1,000
    logs = pd.concat([pd.DataFrame({"run": "late", "step": steps, "sas_soft": soft, "sas_uas": uas}),
                      pd.DataFrame({"run": "early", "step": steps, "sas_soft": early + soft, "sas_uas": uas})])
    rep = pd.DataFrame({"run": ["late", "early"], "bend_start": [1375.0, 1000.0], "eval_interval": 125.0})
    out = soft_onsets(rep, logs)
    expect = structure_onset(steps, soft, step_range=(300.0, None))
    assert 1000 < expect < 1375 and out.soft_onset.tolist() == [expect, expect]  # the early rise is skipped
    assert out.soft_lead.tolist() == [1375.0 - expect, 1000.0 - expect]
    assert out.soft_onset_ok.tolist() == [abs(1375.0 - expect) <= 125, abs(1000.0 - expect) <= 125]
    # SAS read at the last evaluation at or before the earlier of the soft ▲ and the bend
    last = steps[steps <= expect][-1]
    assert out.uas_before_soft.tolist() == pytest.approx([0.1 + last / 10000, 0.2])
    assert "soft_onset" not in rep  # a copy
    with pytest.raises(ValueError, match="'late'.*sas_soft needs at least"):
        soft_onsets(rep, logs[logs.step < 500])


def test_before_transition_reads_the_last_row_at_or_before_the_earlier_onset():
    reports = pd.DataFrame({"run": ["a", "b", "c"], "structure_onset": [1031.25, 1500.0, np.nan],
                            "bend_start": [1218.75, 1250.0, np.nan]})
    table = pd.DataFrame({"run": ["a"] * 4 + ["b"] * 3 + ["c"], "step": [1500, 0, 1000, 1020, 0, 1000, 1500, 0],
                          "x": [0.3, 0.1, 0.17, np.nan, 0.09, 0.14, 0.3, 0.1]})
    got = O.before_transition(reports, table, "x")
    assert got["a"] == 0.17  # ▲ at 1,031: the reading at 1,000 (rows out of order; 1,020 has none)
    assert got["b"] == 0.14  # the bend at 1,250 comes first
    assert np.isnan(got["c"])  # no transition


def test_after_transition_takes_the_highest_reading_from_the_end_of_the_bend():
    reports = pd.DataFrame({"run": ["a", "b"], "bend_end": [2000.0, np.nan]})
    table = pd.DataFrame({"run": ["a"] * 4 + ["b"], "step": [1500, 2000, 2500, 3000, 3000],
                          "x": [0.4, 0.26, 0.27, np.nan, 0.3]})
    got = O.after_transition(reports, table, "x")
    assert got["a"] == 0.27  # not 0.4 (before the bend ended); NaN readings ignored
    assert np.isnan(got["b"])  # no bend


def test_report_table_reports_every_run_and_names_the_ones_too_short_to_judge():
    from sasutils.onsets import report_table, transition_report

    steps = np.arange(0, 5001, 125, dtype=float)
    loss = 6.5 + 2.5 * np.exp(-steps / 120) - 0.8 / (1 + np.exp(-(steps - 2500) / 100))
    uas = 0.1 + 0.25 / (1 + np.exp(-(steps - 2400) / 100))
    full = pd.DataFrame({"run": "b", "step": steps, "eval_loss": loss, "sas_uas": uas})
    short = full.iloc[:2].assign(run="a")
    t = report_table(pd.concat([full, short]))
    assert t.run.tolist() == ["b", "a"]  # first-appearance order
    assert t.loc[0, "structure_onset"] == pytest.approx(transition_report(full)["structure_onset"])
    assert pd.isna(t.loc[0, "error"]) and isinstance(t.loc[1, "error"], str) and pd.isna(t.loc[1, "uas_ok"])


def test_criteria_in_words_marks_each_verdict_with_its_readings_and_threshold():
    from sasutils.onsets import CRITERIA, criteria_in_words, transition_report

    steps = np.array([0, 10, 20, 50, 100, 200, 250] + list(range(500, 6001, 250)), float)
    loss = 6.5 + 2.5 * np.exp(-steps / 120) - 0.8 / (1 + np.exp(-(steps - 3000) / 150))
    uas = 0.1 + 0.25 / (1 + np.exp(-(steps - 3000) / 150))
    rep = transition_report(pd.DataFrame({"step": steps, "eval_loss": loss, "sas_uas": uas, "offset_best": 0.3}))
    head, *lines = criteria_in_words(rep).split("\n")
    assert len(lines) == len(CRITERIA)
    assert [line[0] for line in lines] == ["✓" if rep[c] else "✗" for c in CRITERIA] == ["✓"] * 4 + ["✗"]  # no BLiMP
    assert head == "4 of 5 criteria hold"
    assert f"{rep['bend_nats']:.2f} nats" in lines[0] and "≥ 0.5 nats within ≤ 20 %" in lines[0]
    assert f"{rep['uas_before']:.3f} before" in lines[1] and "≤ 0.15 before and ≥ 0.3 after" in lines[1]
    assert "baseline 0.300" in lines[2] and "n/a at ▲" in lines[4]
    lead = rep["bend_start"] - rep["structure_onset"]
    assert (f"{abs(lead):,.0f} steps {'before' if lead > 0 else 'after'}" if lead else "at the start") in lines[3]


def test_criteria_in_words_reads_missing_verdicts_as_failing_and_says_what_was_not_found():
    from sasutils.onsets import criteria_in_words

    rep = {"drop_ok": True, "uas_ok": True, "beats_offset": True, "onset_ok": True, "blimp_ok": True,
           "bend_nats": 0.6, "bend_start": 1250.0, "bend_end": 1875.0, "drop_window_frac": 0.125,
           "structure_onset": 1000.0, "eval_interval": 250.0, "uas_before": 0.1504, "uas_after": 0.33}
    text = criteria_in_words(rep)
    assert text.startswith("5 of 5 criteria hold: the transition")
    assert "250 steps before the start of the loss bend" in text and "0.1504 before" in text  # not printed as 0.150
    assert "0.15004 before" in criteria_in_words({**rep, "uas_before": 0.15004})
    assert "(20.04 % of the run)" in criteria_in_words({**rep, "drop_window_frac": 0.2004})
    # verdicts read back from a CSV as text
    assert criteria_in_words({**rep, "drop_ok": "False", "blimp_ok": "True"}).startswith("4 of 5")
    # verdicts without a value, as report_table or a nullable dtype leaves them, read as failing
    for missing in (float("nan"), np.float32("nan"), None, pd.NA):
        assert criteria_in_words(pd.Series({**rep, "blimp_ok": missing})).startswith("4 of 5")
    no_bend = {**rep, "bend_start": float("nan"), "bend_end": float("nan"), "drop_window_frac": float("nan"),
               "bend_nats": None}
    assert "no bend of the loss found" in criteria_in_words(no_bend)
    assert "at step 1,000; no loss bend to compare it with" in criteria_in_words(no_bend)
    assert "▲ not found" in criteria_in_words({**rep, "structure_onset": None})
    assert criteria_in_words({"run": "r", "error": "too short: 3 evaluations"}) == "not judged: too short: 3 evaluations"
    with pytest.raises(ValueError, match="onset_ok"):
        criteria_in_words({k: v for k, v in rep.items() if k != "onset_ok"})
