"""sasutils.claims: verdicts follow the documented rules on constructed runs with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sasutils import claims


def curve(run, variant, seed, onset=None, drop=0.7, plateau=6.4, uas_lo=0.12, uas_hi=0.33, blimp_end=0.55,
          steps=5000, arc=0.4):
    """A logged run: loss on a plateau that drops by ``drop`` after ``onset`` (sigmoid), SAS rising with it."""
    s = np.arange(0, steps + 1, 125.0)
    if onset is None:
        loss = plateau - 0.0001 * s / 10
        uas = np.full_like(s, uas_lo)
        blimp = np.full_like(s, 0.51)
    else:
        sig = 1 / (1 + np.exp(-(s - onset - 300) / 120))
        loss = plateau - drop * sig - 0.00002 * s
        uas = uas_lo + (uas_hi - uas_lo) / (1 + np.exp(-(s - onset - 250) / 100))
        blimp = 0.52 + (blimp_end - 0.52) / (1 + np.exp(-(s - onset - 900) / 150))
    loss = loss + 2.5 * np.exp(-s / 100)  # the initial descent
    return pd.DataFrame({"run": run, "variant": variant, "seed": seed, "step": s, "eval_loss": loss,
                         "sas_uas": uas, "offset_best": 0.30, "blimp_mean": blimp, "eval_reg": arc})


def logs(release_helps: bool):
    parts = []
    for seed in range(3):
        parts.append(curve(f"b{seed}", "Base", seed, onset=1000 + 50 * seed))
        parts.append(curve(f"m{seed}", "SAS-", seed, onset=None, arc=0.0))
        parts.append(curve(f"p{seed}", "SAS+", seed, onset=600 + 50 * seed, drop=0.5, blimp_end=0.56))
        if release_helps:
            parts.append(curve(f"k{seed}", "SAS-(500)", seed, onset=900, drop=0.9, blimp_end=0.58))
        else:
            parts.append(curve(f"k{seed}", "SAS-(500)", seed, onset=2500, drop=0.4, blimp_end=0.53))
        parts.append(curve(f"l{seed}", "SAS-(3000)", seed, onset=None))
    return pd.concat(parts, ignore_index=True)


def test_paper_like_runs_reproduce_claims_2_to_5():
    rep = claims.reports(logs(release_helps=True))
    t = claims.five_claims(rep).set_index("claim").verdict
    assert t[2] == "yes" and t[3] == "yes" and t[4] == "yes" and t[5] == "yes"
    assert t[1] in ("yes", "partly")  # the abrupt rise is found in every seed


def test_release_that_hurts_is_not_reproduced():
    rep = claims.reports(logs(release_helps=False))
    t = claims.five_claims(rep).set_index("claim").verdict
    assert t[4] == "no"
    assert rep[rep.variant == "SAS-"].peak_uas.max() == pytest.approx(0.12)


def test_paired_differences_and_intervals():
    rep = pd.DataFrame({"variant": ["Base", "Base", "X", "X"], "seed": [0, 1, 0, 1], "v": [1.0, 2.0, 1.5, 2.1]})
    d = claims.paired(rep, "X", "v")
    assert d.round(6).tolist() == [0.5, 0.1]
    assert claims.fmt(d, 2) == "0.30 [0.10, 0.50]"
    assert claims.fmt([np.nan]) == "n/a"
    assert claims.span([1218.75, 1031.25], 0) == "1,031–1,219" and claims.span(d, 2) == "0.10–0.50"
    assert claims.span([500.0], 0) == "500" and claims.span([0.1234, 0.1231], 3) == "0.123"
    assert claims.span([-0.0021, 0.031], 3, signed=True) == "-0.002 to +0.031"
    assert claims.release_step("SAS−(3000)") == 3000 and claims.release_step("SAS-") is None


def test_and_list_reads_as_english():
    assert claims.and_list([0, 2, 3]) == "0, 2 and 3" and claims.and_list(["a", "b"]) == "a and b"
    assert claims.and_list([5]) == "5" and claims.and_list([]) == "none"
    assert claims.and_list(str(s) for s in range(2)) == "0 and 1"  # any iterable, read once


@pytest.mark.parametrize("k,n", [(0, 3), (3, 3), (4, 11), (2, 27), (6, 38)])
def test_wilson_is_the_inverted_score_test(k, n):
    # reference: the rates p0 that a score test at z = 1.96 does not reject, |k - n p0| <= z sqrt(n p0 (1 - p0))
    p0 = np.linspace(0, 1, 200_001)
    inside = p0[np.abs(k - n * p0) <= 1.96 * np.sqrt(n * p0 * (1 - p0))]
    lo, hi = claims.wilson(k, n)
    assert lo == pytest.approx(inside.min(), abs=1e-4) and hi == pytest.approx(inside.max(), abs=1e-4)


def test_sign_test_against_enumeration():
    import itertools
    diffs = [3.0, 1.0, 0.0, -2.0, 5.0, 4.0, 1.0, 2.0, 0.0, 6.0, 1.0]  # 8 up, 1 down, 2 ties
    # reference: every sign pattern of the 9 non-zero differences, equally likely under H0; two-sided by the
    # probability of a count at least as far from n/2 as the observed one
    counts = [sum(s) for s in itertools.product([0, 1], repeat=9)]
    ref = sum(abs(c - 4.5) >= abs(8 - 4.5) for c in counts) / len(counts)
    assert claims.sign_test(diffs) == pytest.approx(ref) == pytest.approx(20 / 512)
    assert claims.sign_test([1.0, -1.0]) == 1.0 and np.isnan(claims.sign_test([0.0, 0.0]))


def test_pass_rate_text_and_bad_counts():
    assert claims.pass_rate([True] * 4 + [False] * 7) == "4 of 11 (15–65 %)"
    assert claims.pass_rate([False, False, False]) == "0 of 3 (0–56 %)"
    with pytest.raises(ValueError, match="k=4, n=3"):
        claims.wilson(4, 3)
    with pytest.raises(ValueError, match="n=0"):
        claims.pass_rate([])


def test_run_and_seed_summaries_as_text():
    from sasutils.onsets import CRITERIA, timing

    g = timing(pd.DataFrame({
        "seed": [1, 0], "structure_onset": [1000.0, 875.0], "capabilities_onset": [1600.0, 1500.0],
        "bend_start": [1343.75, 1125.0], "bend_nats": [0.62, 0.61], "uas_before": [0.149, 0.148],
        "uas_after": [0.327, 0.366], "uas_final": [0.321, 0.356], "offset_best": 0.308, "blimp_at_onset": [0.53, 0.54],
        "blimp_final": [0.55, 0.57], "minutes": [18.6, 19.9], **{c: [True, True] for c in CRITERIA}}))
    g.loc[0, "onset_ok"] = False
    g = timing(g)
    assert claims.run_summary(next(g.itertuples())) == {
        "structure_onset": "1,000", "bend_start": "1,344", "lead": "344", "uas_before": "0.149", "uas_after": "0.327",
        "bend_nats": "0.62", "misses": "onset_ok"}
    s = claims.seed_summary(g)
    assert list(s) == list(claims.SEED_COLUMNS)
    assert s["seeds"] == "0, 1" and s["ok"] == "1 of 2" and s["misses"] == "onset_ok in 1"
    assert s["onset"] == "875–1,000" and s["lead"] == "250–344" and s["margin"] == "+0.013 to +0.048"
    assert s["minutes"] == "19–20" and s["blimp_end"] == "0.550–0.570"
    # the same, flat over runs and configurations (keys name glued values)
    texts = claims.run_texts(g, lambda r: f"r{r.seed}")
    assert texts["r1_lead"] == "344" and texts["r0_misses"] == "none" and len(texts) == 2 * 7
    two = pd.concat([g.assign(lr=0.002), g.assign(lr=0.003, minutes=30.0)], ignore_index=True)
    flat, table = claims.seed_table(two, ["lr"], lambda lr: f"g{lr * 1e3:g}")
    assert flat["g2_ok"] == "1 of 2" and flat["g3_minutes"] == "30" and len(flat) == 2 * len(claims.SEED_COLUMNS)
    assert list(table.index) == [0.002, 0.003] and list(table.columns) == list(claims.SEED_COLUMNS.values())
    assert table.loc[0.002, "lead of ▲"] == s["lead"]


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="variant"):
        claims.reports(pd.DataFrame({"run": ["a"], "step": [0], "eval_loss": [1.0], "seed": [0]}))


def test_paired_mean_se_against_simulation():
    """The formula agrees with the spread of simulated means of paired differences of noisy estimates."""
    se_v, se_b = np.array([0.01, 0.02, 0.012]), np.array([0.011, 0.009, 0.015])
    assert claims.paired_mean_se(se_v, se_b) == pytest.approx(np.sqrt((se_v ** 2 + se_b ** 2).sum()) / 3)
    rng = np.random.default_rng(0)
    means = (rng.normal(0, se_v, (200_000, 3)) - rng.normal(0, se_b, (200_000, 3))).mean(axis=1)
    assert means.std() == pytest.approx(claims.paired_mean_se(se_v, se_b), rel=0.01)
