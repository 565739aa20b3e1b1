"""The paper's five claims, tested on a set of intervention runs (Base, SAS+, SAS-, SAS-(k); several seeds).

Input is the tidy metrics table of :func:`sasutils.experiments.collect` with two added columns,
``variant`` (``"Base"``, ``"SAS+"``, ``"SAS-"``, ``"SAS-(k)"``) and ``seed``. Intervals are over seeds:
``mean [min, max]``; differences between variants are *paired by seed* (a seed fixes the
initialisation and the batch order, so Base and SAS-(k) of one seed differ only by the intervention).

Verdicts follow fixed rules (see :func:`five_claims`), never a judgement made after seeing the numbers:
*yes* when every seed agrees with the claim, *partly* when some do or only part of the claim holds,
*no* when none does.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from . import onsets

# The paper's numbers (Chen et al., ICLR 2024; BERT-base, 3 seeds), as quoted in the project's issue.
PAPER = {
    1: "▲ ≈ 20k steps, ● ≈ 25k; UAS ≈ 0.09 → 0.37",
    2: "SAS− UAS ≈ 0.045 throughout; BLiMP 0.67 (SAS−) vs 0.745 (Base); SAS+ onsets earlier",
    3: "final MLM loss 1.78 Base, 2.40 SAS+, 2.02 SAS−",
    4: "SAS−(3k) ends with lower loss and higher BLiMP than Base, and converges faster",
    5: "releasing during the alternative-strategy onset, or suppressing too long, hurts",
}
CLAIMS = {
    1: "SAS appears abruptly, concurrent with the loss drop",
    2: "SAS− never spikes and ends with lower BLiMP; SAS+ moves the onsets earlier",
    3: "neither SAS+ nor SAS− improves the final MLM loss",
    4: "brief suppression (SAS−(k) released before the onset) beats Base",
    5: "suppressing too long hurts",
}


def release_step(variant: str) -> int | None:
    """k of ``"SAS-(k)"`` (also written with a Unicode minus), else None."""
    m = re.fullmatch(r"SAS[-−]\((\d+)\)", variant)
    return int(m.group(1)) if m else None


def reports(logs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: ``variant``, ``seed``, the final values of the metrics and
    :func:`sasutils.onsets.transition_report` (onsets, UAS before/after, BLiMP at ▲ and at the end)."""
    need = {"run", "variant", "seed", "step", "eval_loss"}
    if not need <= set(logs.columns):
        raise ValueError(f"logs lacks columns {sorted(need - set(logs.columns))}")
    rows = []
    for run, log in logs.groupby("run", sort=False):
        log = log.sort_values("step").drop_duplicates("step", keep="last")
        last = log.iloc[-1]
        rep = onsets.transition_report(log)
        rows.append({"run": run, "variant": last["variant"], "seed": int(last["seed"]), "last_step": int(last.step),
                     "final_loss": rep["loss_final"], "final_uas": rep.get("uas_final", np.nan),
                     "peak_uas": float(log[log.step >= 0.1 * last.step].sas_uas.max()) if "sas_uas" in log else np.nan,
                     "final_blimp": rep.get("blimp_final", np.nan),
                     "final_arc_attention": float(last.eval_reg) if "eval_reg" in log else np.nan,
                     **{k: rep[k] for k in ("structure_onset", "capabilities_onset", "bend_start", "bend_end",
                                            "bend_nats", "uas_before", "uas_after", "offset_best",
                                            "blimp_at_onset", "drop_ok", "uas_ok", "onset_ok", "blimp_ok")
                        if k in rep}})
    return pd.DataFrame(rows)


def interval(values) -> tuple[float, float, float]:
    """``(mean, min, max)`` of the finite values (NaNs if none)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return (float(v.mean()), float(v.min()), float(v.max())) if len(v) else (np.nan, np.nan, np.nan)


def fmt(values, digits: int = 3) -> str:
    """``"mean [min, max]"`` over seeds (one value: just it)."""
    m, lo, hi = interval(values)
    if not np.isfinite(m):
        return "n/a"
    f = f"{{:.{digits}f}}" if digits else "{:,.0f}"
    return f.format(m) if lo == hi else f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]"


def span(values, digits: int = 3, signed: bool = False) -> str:
    """``"min–max"`` over seeds (thousands separated), e.g. ``span([1031.25, 1218.75], 0) == "1,031–1,219"``; one
    number where both ends print the same (a single seed). ``signed``: differences, ``"-0.002 to +0.031"``."""
    v = pd.Series(values, dtype=float)
    fmt = f"{{:+,.{digits}f}}" if signed else f"{{:,.{digits}f}}"
    lo, hi = fmt.format(v.min()), fmt.format(v.max())
    return lo if lo == hi else f"{lo} to {hi}" if signed else f"{lo}–{hi}"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a pass rate ``k / n`` (``z`` = 1.96: 95 %). With p = k/n,

    centre = (p + z²/2n) / (1 + z²/n),   half-width = z √(p(1−p)/n + z²/4n²) / (1 + z²/n).

    Unlike p ± z√(p(1−p)/n) it stays inside [0, 1] and is not empty at k = 0 or k = n, which matters for the few
    seeds a configuration gets here."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson: need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p, d = k / n, 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def sign_test(differences) -> float:
    """Two-sided exact sign test of paired differences: zeros are dropped, and with n non-zero differences of which
    k are positive, p = min(1, 2 · P(X ≤ min(k, n−k))) for X ~ Binomial(n, ½). NaN if every difference is zero."""
    d = np.asarray(differences, float)
    d = d[np.isfinite(d) & (d != 0)]
    n, k = len(d), int((d > 0).sum())
    if n == 0:
        return float("nan")
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def pass_rate(flags) -> str:
    """How many of the runs pass, with the 95 % Wilson interval: ``"4 of 11 (15–65 %)"``. Raises on no runs."""
    flags = pd.Series(flags, dtype=bool)
    lo, hi = wilson(int(flags.sum()), len(flags))
    return f"{int(flags.sum())} of {len(flags)} ({100 * lo:.0f}–{100 * hi:.0f} %)"


def and_list(items) -> str:
    """Items as an English list: ``and_list([0, 2, 3]) == "0, 2 and 3"``, one item alone, ``"none"`` if empty."""
    items = [str(i) for i in items]
    return "none" if not items else items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def run_summary(r) -> dict[str, str]:
    """One run (a row of :func:`sasutils.onsets.timing`) as text: ▲, the loss bend's start and nats, the lead of ▲,
    SAS before / after, and the criteria it misses (``"none"``)."""
    digits = {"structure_onset": 0, "bend_start": 0, "lead": 0, "uas_before": 3, "uas_after": 3, "bend_nats": 2}
    return {**{col: span([getattr(r, col)], nd) for col, nd in digits.items()}, "misses": r.misses or "none"}


# seed_summary's keys (short: they name glued values) and the column titles a table shows them under
SEED_COLUMNS = {"seeds": "seeds", "ok": "every criterion", "misses": "misses", "onset": "▲", "bend": "loss bend",
                "lead": "lead of ▲", "before": "SAS before", "after": "SAS after", "margin": "final SAS − offset",
                "blimp_onset": "BLiMP at ▲", "blimp_end": "BLiMP end", "minutes": "minutes"}


def seed_summary(g: pd.DataFrame) -> dict[str, str]:
    """One configuration's seeds (rows of :func:`sasutils.onsets.timing` with a ``minutes`` column) as text, keyed
    as :data:`SEED_COLUMNS`: how many meet every criterion, what the others miss, and the span over seeds of ▲, the
    bend, the lead, SAS before / after, the final SAS's margin over the best offset, BLiMP and wall minutes."""
    g = g.sort_values("seed")
    return {"seeds": ", ".join(map(str, g.seed)), "ok": f"{int(g.all_ok.sum())} of {len(g)}",
            "misses": onsets.miss_counts(g), "onset": span(g.structure_onset, 0), "bend": span(g.bend_start, 0),
            "lead": span(g.lead, 0), "before": span(g.uas_before, 3), "after": span(g.uas_after, 3),
            "margin": span(g.uas_final - g.offset_best, 3, signed=True), "blimp_onset": span(g.blimp_at_onset, 3),
            "blimp_end": span(g.blimp_final, 3), "minutes": span(g.minutes, 0)}


def run_texts(reports: pd.DataFrame, key) -> dict[str, str]:
    """:func:`run_summary` of every run, flat: ``{f"{key(row)}_{column}": text}`` (``key``: a row -> a name prefix,
    e.g. of glued values)."""
    return {f"{key(r)}_{col}": text for r in reports.itertuples() for col, text in run_summary(r).items()}


def seed_table(reports: pd.DataFrame, by: list[str], key) -> tuple[dict[str, str], pd.DataFrame]:
    """:func:`seed_summary` per configuration (a group of the columns ``by``). Returns the texts flat,
    ``{f"{key(*values)}_{k}": text}`` (``values``: the group's values of ``by``), and a table of one row per
    configuration, indexed by ``by``, its columns titled as :data:`SEED_COLUMNS`."""
    texts, rows = {}, []
    for values, g in reports.groupby(list(by)):
        values = values if isinstance(values, tuple) else (values,)
        summary = seed_summary(g)
        texts.update({f"{key(*values)}_{k}": text for k, text in summary.items()})
        rows.append({**dict(zip(by, values)), **summary})
    return texts, pd.DataFrame(rows).set_index(list(by)).rename(columns=SEED_COLUMNS)


def paired(rep: pd.DataFrame, variant: str, column: str, base: str = "Base") -> pd.Series:
    """Per-seed difference ``variant - base`` of ``column`` (seeds present in both)."""
    a = rep[rep.variant == variant].set_index("seed")[column]
    b = rep[rep.variant == base].set_index("seed")[column]
    return (a - b).dropna()


def paired_mean_se(se_variant, se_base) -> float:
    """Standard error of the mean of n per-seed differences ``variant - base`` between independent estimates, each
    with its own standard error (e.g. a BLiMP mean over sampled pairs): ``sqrt(sum(se_v**2 + se_b**2)) / n``."""
    se_v, se_b = np.asarray(se_variant, float), np.asarray(se_base, float)
    return float(np.sqrt(np.sum(se_v ** 2 + se_b ** 2)) / len(se_v))


def _verdict(flags) -> str:
    flags = [bool(f) for f in flags]
    if not flags:
        return "n/a"
    return "yes" if all(flags) else ("partly" if any(flags) else "no")


def _combine(*parts: str) -> str:
    """A claim of several parts: yes if every part is yes, no if every part is no, else partly."""
    return "yes" if all(p == "yes" for p in parts) else ("no" if all(p == "no" for p in parts) else "partly")


def five_claims(rep: pd.DataFrame) -> pd.DataFrame:
    """The five-claims table from :func:`reports`: ``claim``, ``statement``, ``paper``, ``ours``, ``verdict``.

    Rules (per seed; the verdict is yes / partly / no as all / some / none of the seeds pass; a claim of
    several parts is yes if every part is, no if none is, else partly):

    1. Base: (a) a structure onset ▲ is found and SAS rises by >= 0.15 across the drop; (b) ▲ lies within
       one evaluation interval of the loss drop's start (``onset_ok``).
    2. (a) SAS−'s peak SAS (after the first 10 % of the run) stays below Base's SAS before the onset +
       0.05; (b) its final BLiMP is below Base's; (c) SAS+'s ▲ is earlier than Base's.
    3. Final loss of SAS+ and of SAS− above Base's.
    4. For each k at or before Base's mean ▲: final loss below Base's and final BLiMP above (per seed, k).
    5. The largest k ends with a higher loss than the smallest k (per seed).
    """
    base = rep[rep.variant == "Base"]
    ks = sorted(k for k in (release_step(v) for v in rep.variant.unique()) if k is not None)
    rows = []

    rise = base.uas_after - base.uas_before
    v1 = _combine(_verdict(base.structure_onset.notna() & (rise >= 0.15)), _verdict(base.onset_ok))
    lead = onsets.timing(base).lead
    rows.append((1, f"▲ {fmt(base.structure_onset, 0)}, ● {fmt(base.capabilities_onset, 0)}; "
                    f"UAS {fmt(base.uas_before)} → {fmt(base.uas_after)}; loss drop {fmt(base.bend_nats, 2)} nats "
                    f"from step {fmt(base.bend_start, 0)} (▲ leads it by {fmt(lead, 0)} steps)", v1))

    if {"SAS-", "SAS+"} <= set(rep.variant):
        minus, plus = rep[rep.variant == "SAS-"], rep[rep.variant == "SAS+"]
        pre = base.set_index("seed").uas_before
        never = (minus.set_index("seed").peak_uas < pre + 0.05).reindex(pre.index)
        dblimp = paired(rep, "SAS-", "final_blimp")
        donset = paired(rep, "SAS+", "structure_onset")
        v2 = _combine(_verdict(never.fillna(False)), _verdict([dblimp.get(s, 0) < 0 for s in pre.index]),
                      _verdict([donset.get(s, 0) < 0 for s in pre.index]))
        rows.append((2, f"SAS− peak UAS {fmt(minus.peak_uas)} (Base before ▲ {fmt(base.uas_before)}); "
                        f"BLiMP SAS− {fmt(minus.final_blimp)} vs Base {fmt(base.final_blimp)} "
                        f"(paired diff {fmt(dblimp)}); SAS+ ▲ − Base ▲ {fmt(donset, 0)} steps", v2))
        d_plus, d_minus = paired(rep, "SAS+", "final_loss"), paired(rep, "SAS-", "final_loss")
        rows.append((3, f"final loss Base {fmt(base.final_loss, 2)}, SAS+ {fmt(plus.final_loss, 2)}, "
                        f"SAS− {fmt(minus.final_loss, 2)}",
                     _verdict([d_plus.get(s, -1) > 0 and d_minus.get(s, -1) > 0 for s in base.seed])))

    if ks:
        early = [k for k in ks if k <= base.structure_onset.mean()] or ks[:1]
        parts, flags = [], []
        for k in early:
            v = f"SAS-({k})"
            dl, db = paired(rep, v, "final_loss"), paired(rep, v, "final_blimp")
            parts.append(f"SAS−({k}) − Base: loss {fmt(dl, 2)}, BLiMP {fmt(db)}")
            flags += [dl.get(s, 1) < 0 and db.get(s, -1) > 0 for s in base.seed]
        rows.append((4, "; ".join(parts), _verdict(flags)))
        lo, hi = f"SAS-({ks[0]})", f"SAS-({ks[-1]})"
        d = (rep[rep.variant == hi].set_index("seed").final_loss - rep[rep.variant == lo].set_index("seed").final_loss).dropna()
        by_k = ", ".join(f"k={k}: {fmt(rep[rep.variant == f'SAS-({k})'].final_loss, 2)}" for k in ks)
        rows.append((5, f"final loss {by_k}; SAS−({ks[-1]}) − SAS−({ks[0]}) {fmt(d, 2)}",
                     _verdict([x > 0 for x in d]) if len(ks) > 1 else "n/a"))

    out = pd.DataFrame(rows, columns=["claim", "ours", "verdict"])
    out.insert(1, "statement", out.claim.map(CLAIMS))
    out.insert(2, "paper", out.claim.map(PAPER))
    return out
