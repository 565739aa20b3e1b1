"""Phase-transition (onset) detection on metric curves over non-uniformly spaced steps.

Chen et al. (ICLR 2024) mark two points on the UAS ("SAS") curve of attention vs. parses: the
**structure onset** (start of the abrupt UAS spike) and the **capabilities onset** (its end, after
which BLiMP rises). The MLM loss drops steeply in a window around the spike; in SAS- runs the loss
still drops at some point with no UAS rise (the **alternative-strategy onset**). This module turns
those descriptions into rules on curves sampled at arbitrary, strictly increasing steps
(checkpoints log-spaced early and regular later; in-training metrics every N steps).

The curve model
---------------
A metric sampled at steps ``x_0 < ... < x_{n-1}`` with values ``y_i`` is read as its piecewise-linear
interpolant. With segment slopes ``s_i = (y_{i+1} - y_i) / (x_{i+1} - x_i)``, its second derivative
is a sum of point masses at the interior steps: the change of slope ``Δs_k = s_k - s_{k-1}`` at
``x_k``. All rules below work on the given steps; nothing is resampled to a uniform grid.

Acceleration, ``smooth=0`` (no smoothing):
    the classic three-point second difference for non-uniform spacing, at the interior steps only::

        a_k = 2 * [(y_{k+1}-y_k)/(x_{k+1}-x_k) - (y_k-y_{k-1})/(x_k-x_{k-1})] / (x_{k+1}-x_{k-1})
            = Δs_k / b_k,          b_k = (x_{k+1} - x_{k-1}) / 2

    Slopes are the segment slopes ``s_i``; values are the interpolant.

Acceleration, ``smooth > 0`` (Gaussian smoothing in step space, the default):
    each mass ``Δs_k`` is spread by a Gaussian of standard deviation ``σ_k = sqrt(σ² + b_k²/(2π))``
    and the acceleration is evaluated on a fine grid of steps (every σ/8, plus the evaluated steps)::

        a(x) = Σ_k Δs_k · φ((x - x_k) / σ_k) / σ_k        (+ mirror terms near the ends, below)

    This is the exact second derivative of the interpolant smoothed by that kernel, in closed form;
    the smoothed slope and value are its integrals (Gaussian CDF and "smoothed ramp" terms).
    ``σ = smooth × median step gap`` (default ``smooth=1``) unless ``sigma=`` gives it in steps;
    either may be a per-metric mapping (``sigma={"loss": 500}``).

    - Near the ends the interpolant is continued by odd reflection through the end point (mirror
      masses ``-Δs_k`` at ``2x_0 - x_k`` and ``2x_{n-1} - x_k``), so the smoothed curve there uses the
      slopes just inside rather than one possibly 10-step, noisy first segment.
    - The ``b_k`` term: with σ smaller than the local gap, an isolated checkpoint's mass would peak at
      ``Δs_k/(σ√2π)`` and outweigh densely sampled regions; with it the peak tends to the three-point
      value ``Δs_k/b_k``, and it is negligible where σ ≫ gap.
    - The default suits checkpoint grids (log-spaced early, regular later: the median gap is the
      regular interval). A loss logged densely (every 10-50 steps) and noisily needs ``sigma`` in steps
      of the order of the drop's width; one median gap is then far too small.

Why not interpolate to a uniform grid and difference twice: a coarse grid discards the dense early
points; a fine grid turns every kink of the interpolant into a spike whose height depends on the grid
step. The closed form is the fine-grid limit without a grid parameter. Why smooth at a fixed σ in
steps: the raw second difference of noise scales like noise/gap², so without smoothing the densely
sampled early checkpoints (gaps of 10 steps) win the argmax on pure noise.

Caveat: smoothing widens a transition. For a logistic ``y = A σ((x-c)/w)`` the second derivative
peaks at ``c ∓ w·ln(2+√3)``; the smoothed rule moves both onsets outward (for w=200 on a 250-step
grid with the default σ=250, by about 140 steps each). Compare onsets only between runs analysed
with the same σ in steps.

Rules (one function each)
-------------------------
- :func:`structure_onset`: the step of the largest positive acceleration of UAS.
- :func:`capabilities_onset`: the step of the most negative acceleration strictly after it.
- :func:`loss_drop_window`: the step of the most negative slope of the loss (per step), extended on
  both sides while the slope stays at or below ``frac`` (default 1/3) of that peak slope; reports
  start, end, the drop in nats ``loss(start) - loss(end)`` (read from the unsmoothed interpolant)
  and its fraction of the run's total decrease ``loss(first step) - loss(last step)``.
- :func:`alt_strategy_onset`: the start of that loss-drop window if the drop is at least
  ``min_drop`` nats and the (smoothed) UAS rises by at most ``max_uas_rise`` within the window
  (max over the window minus value at its start), else ``None``.
- :func:`bootstrap_interval`: percentile intervals (default 90 %: 5th-95th percentiles) over
  resampled seeds or evaluation items.
- :func:`detect_onsets` / :func:`onset_table`: everything at once, as a flat dict / one row per run.

All searches can be restricted with ``step_range=(lo, hi)``; real MLM runs need it for the loss
(the first few hundred steps descend much faster than any later drop).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
from scipy.special import ndtr  # standard normal CDF Φ

__all__ = [
    "MIN_POINTS",
    "DEFAULT_SMOOTH",
    "DEFAULT_FRAC",
    "DEFAULT_LEVEL",
    "ONSET_KEYS",
    "LossDrop",
    "acceleration_curve",
    "slope_curve",
    "structure_onset",
    "capabilities_onset",
    "loss_drop_window",
    "alt_strategy_onset",
    "detect_onsets",
    "bootstrap_interval",
    "onset_table",
    "loss_bend_window",
    "CRITERIA",
    "UAS_BEFORE_MAX",
    "UAS_AFTER_MIN",
    "DROP_MIN_NATS",
    "DROP_MAX_FRAC",
    "transition_report",
    "criteria_in_words",
    "timing",
    "miss_counts",
    "never_left_plateau",
    "restated_criteria",
    "before_thresholds",
    "soft_onsets",
]

MIN_POINTS = 5
DEFAULT_SMOOTH = 1.0  # σ in units of the median step gap
DEFAULT_FRAC = 1.0 / 3.0  # loss-drop window: slope at or below 1/3 of the peak slope
DEFAULT_LEVEL = 0.90  # bootstrap: 5th-95th percentiles
DEFAULT_MIN_DROP = 0.1  # nats
DEFAULT_MAX_UAS_RISE = 0.05
_GRID_PER_SIGMA = 8  # fine-grid points per σ
_MAX_GRID = 4001
_TRUNC = 8.0  # Gaussian tails beyond 8σ are < 1e-14 of the peak: skipped
_BLOCK = 512

ONSET_KEYS = (
    "structure_onset",
    "capabilities_onset",
    "uas_rise",
    "loss_drop_start",
    "loss_drop_end",
    "loss_drop_nats",
    "loss_drop_frac",
    "uas_rise_during_drop",
    "alt_strategy_onset",
)

_NAN = float("nan")
_SQRT_2PI = math.sqrt(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def _as_float_array(name: str, a: Any, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric: {e}") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _check_steps(steps: Any, name: str = "steps") -> np.ndarray:
    x = _as_float_array(name, steps, 1)
    if x.size < MIN_POINTS:
        raise ValueError(f"{name} needs at least {MIN_POINTS} points, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains non-finite values (first at index {int(np.argmin(np.isfinite(x)))})")
    bad = np.flatnonzero(np.diff(x) <= 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} must be strictly increasing (index {i}: {x[i]:g} then {x[i + 1]:g})")
    return x


def _check_curve(steps: Any, values: Any, steps_name: str, values_name: str) -> tuple[np.ndarray, np.ndarray]:
    x = _check_steps(steps, steps_name)
    y = _as_float_array(values_name, values, 1)
    if y.size != x.size:
        raise ValueError(f"{values_name} has {y.size} values but {steps_name} has {x.size}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{values_name} contains non-finite values (first at index {int(np.argmin(np.isfinite(y)))})")
    return x, y


def _resolve_sigma(x: np.ndarray, smooth: Any, sigma: Any, metric: str = "") -> float:
    """σ in steps: ``sigma`` if given, else ``smooth`` × median gap between evaluated steps.

    Either may be a mapping by metric name (``{"loss": 500, "uas": 250}``); a metric missing from it
    gets the default (``smooth=1``, ``sigma=None``).
    """
    if isinstance(smooth, Mapping):
        smooth = smooth.get(metric, DEFAULT_SMOOTH)
    if isinstance(sigma, Mapping):
        sigma = sigma.get(metric)
    if sigma is not None:
        if not (np.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0 (steps), got {sigma!r}")
        return float(sigma)
    if not (np.isfinite(smooth) and smooth >= 0):
        raise ValueError(f"smooth must be a finite number >= 0, got {smooth!r}")
    return float(smooth) * float(np.median(np.diff(x)))


def _check_range(step_range: Sequence[float] | None) -> tuple[float, float]:
    """``(lo, hi)`` inclusive; ``None`` (or a ``None`` end) means unbounded."""
    if step_range is None:
        return (-math.inf, math.inf)
    try:
        lo, hi = step_range
        lo = -math.inf if lo is None else float(lo)
        hi = math.inf if hi is None else float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"step_range must be (lo, hi), got {step_range!r}") from None
    if not lo < hi:
        raise ValueError(f"step_range must have lo < hi, got {step_range!r}")
    return lo, hi


def _check_frac(frac: float) -> None:
    if not (0 < frac < 1):
        raise ValueError(f"frac must lie in (0, 1), got {frac!r}")


# ----------------------------------------------------------------------------------------------
# The curve model: a smoother that depends only on the steps and σ (reused across bootstrap draws)
# ----------------------------------------------------------------------------------------------


class _Smoother:
    """Acceleration / slope / value of the kernel-smoothed piecewise-linear interpolant.

    For ``sigma > 0`` the interpolant is continued past each end by odd reflection through the end
    point, so that the smoothed curve near an end uses the slopes just inside it (the first segment
    of a log-spaced grid can be 10 steps long, and its noisy slope would otherwise set the whole
    extension). The second derivative is then a set of Gaussian "atoms": ``+Δs_k`` at ``x_k`` and
    ``-Δs_k`` at the mirror images ``2 x_0 - x_k`` and ``2 x_{n-1} - x_k``.
    """

    def __init__(self, x: np.ndarray, sigma: float):
        self.x = x
        self.sigma = sigma
        self.knots = x[1:-1]
        self.half_span = (x[2:] - x[:-2]) / 2.0  # b_k
        if sigma > 0:
            sk = np.sqrt(sigma**2 + self.half_span**2 / (2.0 * math.pi))
            # atoms in increasing position: left mirrors, interior knots, right mirrors
            self.pos = np.concatenate([(2 * x[0] - self.knots)[::-1], self.knots, (2 * x[-1] - self.knots)[::-1]])
            self.width = np.concatenate([sk[::-1], sk, sk[::-1]])
            n = int(min(_MAX_GRID, math.ceil((x[-1] - x[0]) * _GRID_PER_SIGMA / sigma) + 1))
            self.grid = np.union1d(x, np.linspace(x[0], x[-1], max(n, 2)))
            self._blocks = self._make_blocks()
        else:
            self.grid = None

    def _make_blocks(self) -> list[tuple[slice, int, int, np.ndarray, np.ndarray]]:
        # Banded evaluation: each grid block only sees atoms within _TRUNC·max width, so memory stays
        # O(grid × band) even for loss curves with thousands of points.
        reach = _TRUNC * float(self.width.max())
        blocks = []
        for b0 in range(0, self.grid.size, _BLOCK):
            cols = slice(b0, min(b0 + _BLOCK, self.grid.size))
            g = self.grid[cols]
            i0 = int(np.searchsorted(self.pos, g[0] - reach, side="left"))
            i1 = int(np.searchsorted(self.pos, g[-1] + reach, side="right"))
            z = (g[None, :] - self.pos[i0:i1, None]) / self.width[i0:i1, None]
            dens = np.exp(-0.5 * z * z) / (_SQRT_2PI * self.width[i0:i1, None])
            blocks.append((cols, i0, i1, dens, ndtr(z)))
        return blocks

    def _weights(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.diff(y) / np.diff(self.x)
        ds = np.diff(s)
        if self.sigma == 0:
            return s, ds
        return s, np.concatenate([-ds[::-1], ds, -ds[::-1]])

    def acceleration(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, w = self._weights(y)
        if self.sigma == 0:
            return self.knots, w / self.half_span
        a = np.empty(self.grid.size)
        for cols, i0, i1, dens, _ in self._blocks:
            a[cols] = w[i0:i1] @ dens
        return self.grid, a

    def slope(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """σ = 0: segment slopes at segment midpoints; σ > 0: smoothed slope on the grid."""
        s, w = self._weights(y)
        if self.sigma == 0:
            return (self.x[:-1] + self.x[1:]) / 2.0, s
        # far left the odd extension has the mirrored last slope; atoms left of a band count fully
        left = s[-1] + np.concatenate([[0.0], np.cumsum(w)])
        g = np.empty(self.grid.size)
        for cols, i0, i1, _, cdf in self._blocks:
            g[cols] = left[i0] + w[i0:i1] @ cdf
        return self.grid, g

    def value(self, y: np.ndarray, q: np.ndarray) -> np.ndarray:
        q = np.atleast_1d(np.asarray(q, dtype=float))
        if self.sigma == 0:
            return np.interp(q, self.x, y)
        s, w = self._weights(y)
        # extension = A + s_last·t + Σ w_j relu(t - p_j), with A fixed by passing through (x_0, y_0)
        x0 = self.x[0]
        a0 = y[0] - s[-1] * x0 - np.sum(w * np.maximum(x0 - self.pos, 0.0))
        z = (q[:, None] - self.pos[None, :]) / self.width[None, :]
        ramp = self.width[None, :] * (z * ndtr(z) + np.exp(-0.5 * z * z) / _SQRT_2PI)  # E[relu]
        return a0 + s[-1] * q + ramp @ w


def _smoother(steps: Any, values: Any, smooth: float, sigma: float | None, steps_name: str, values_name: str):
    x, y = _check_curve(steps, values, steps_name, values_name)
    return _Smoother(x, _resolve_sigma(x, smooth, sigma, values_name)), y


def _in_range(xg: np.ndarray, lo: float, hi: float, what: str) -> np.ndarray:
    mask = (xg >= lo) & (xg <= hi)
    if not mask.any():
        raise ValueError(f"step_range ({lo:g}, {hi:g}) contains no point where the {what} is evaluated")
    return mask


# ----------------------------------------------------------------------------------------------
# Rules on one curve (internal versions take a prepared _Smoother)
# ----------------------------------------------------------------------------------------------


def _structure(sm: _Smoother, y: np.ndarray, lo: float, hi: float) -> float:
    xg, a = sm.acceleration(y)
    mask = _in_range(xg, lo, hi, "acceleration")
    idx = np.flatnonzero(mask)
    i = idx[int(np.argmax(a[idx]))]
    return float(xg[i]) if a[i] > 0 else _NAN


def _capabilities(sm: _Smoother, y: np.ndarray, lo: float, hi: float, structure: float) -> float:
    if not np.isfinite(structure):
        return _NAN
    xg, a = sm.acceleration(y)
    idx = np.flatnonzero((xg > structure) & (xg >= lo) & (xg <= hi))
    if idx.size == 0:
        return _NAN
    i = idx[int(np.argmin(a[idx]))]
    return float(xg[i]) if a[i] < 0 else _NAN


class LossDrop(NamedTuple):
    """The steepest-descent window of a loss curve (NaN fields when the loss never decreases)."""

    start: float  # step where the window starts
    end: float  # step where it ends
    drop_nats: float  # loss(start) - loss(end), unsmoothed interpolant
    drop_frac: float  # drop_nats / (loss at first step - loss at last step)
    peak_step: float  # step of the most negative slope
    peak_slope: float  # that slope, nats per step


_NO_DROP = LossDrop(_NAN, _NAN, _NAN, _NAN, _NAN, _NAN)


def _loss_drop(sm: _Smoother, y: np.ndarray, lo: float, hi: float, frac: float) -> LossDrop:
    xg, g = sm.slope(y)
    mask = _in_range(xg, lo, hi, "loss slope")
    idx = np.flatnonzero(mask)
    i = int(idx[int(np.argmin(g[idx]))])
    if not g[i] < 0:
        return _NO_DROP
    thr = frac * g[i]
    left = i
    while left - 1 >= 0 and mask[left - 1] and g[left - 1] <= thr:
        left -= 1
    right = i
    while right + 1 < g.size and mask[right + 1] and g[right + 1] <= thr:
        right += 1
    if sm.sigma == 0:  # slopes belong to segments: the window spans their end steps
        start, end = float(sm.x[left]), float(sm.x[right + 1])
    else:
        start, end = float(xg[left]), float(xg[right])
    y_start, y_end = np.interp([start, end], sm.x, y)
    drop = float(y_start - y_end)
    total = float(y[0] - y[-1])
    return LossDrop(start, end, drop, drop / total if total > 0 else _NAN, float(xg[i]), float(g[i]))


def _uas_rise_during(sm_uas: _Smoother, uas: np.ndarray, start: float, end: float) -> float:
    inside = sm_uas.x[(sm_uas.x > start) & (sm_uas.x < end)]
    q = np.union1d(np.linspace(start, end, 65), inside)
    v = sm_uas.value(uas, q)
    return float(v.max() - v[0])


# ----------------------------------------------------------------------------------------------
# Public single-curve functions
# ----------------------------------------------------------------------------------------------


def acceleration_curve(
    steps: Any, values: Any, *, smooth: float = DEFAULT_SMOOTH, sigma: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(steps_where_evaluated, acceleration)`` per the module's rule (for plots and checks).

    ``smooth=0``: three-point non-uniform second difference at the interior steps; otherwise the
    smoothed acceleration on a fine grid. Units: metric per step².
    """
    sm, y = _smoother(steps, values, smooth, sigma, "steps", "values")
    return sm.acceleration(y)


def slope_curve(
    steps: Any, values: Any, *, smooth: float = DEFAULT_SMOOTH, sigma: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(steps_where_evaluated, slope)``: segment slopes at midpoints (``smooth=0``) or smoothed."""
    sm, y = _smoother(steps, values, smooth, sigma, "steps", "values")
    return sm.slope(y)


def structure_onset(
    steps: Any,
    uas: Any,
    *,
    smooth: float = DEFAULT_SMOOTH,
    sigma: float | None = None,
    step_range: Sequence[float] | None = None,
) -> float:
    """Structure onset ▲: the step of the largest positive UAS acceleration (start of the spike).

    ``smooth``: Gaussian σ in median step gaps (0 = none); ``sigma``: σ in steps (overrides).
    ``step_range=(lo, hi)``: search only there. NaN when the acceleration is nowhere positive.
    """
    sm, y = _smoother(steps, uas, smooth, sigma, "steps", "uas")
    lo, hi = _check_range(step_range)
    return _structure(sm, y, lo, hi)


def capabilities_onset(
    steps: Any,
    uas: Any,
    *,
    smooth: float = DEFAULT_SMOOTH,
    sigma: float | None = None,
    step_range: Sequence[float] | None = None,
    structure: float | None = None,
) -> float:
    """Capabilities onset ●: the step of the most negative UAS acceleration strictly after the
    structure onset (end of the spike, where UAS levels off).

    ``structure``: a structure onset already computed (else it is detected with the same settings).
    NaN when there is no structure onset or no negative acceleration after it.
    """
    sm, y = _smoother(steps, uas, smooth, sigma, "steps", "uas")
    lo, hi = _check_range(step_range)
    if structure is None:
        structure = _structure(sm, y, lo, hi)
    return _capabilities(sm, y, lo, hi, float(structure))


def loss_drop_window(
    steps: Any,
    loss: Any,
    *,
    frac: float = DEFAULT_FRAC,
    smooth: float = DEFAULT_SMOOTH,
    sigma: float | None = None,
    step_range: Sequence[float] | None = None,
) -> LossDrop:
    """The steepest loss descent: the step of the most negative slope (nats per step), extended on
    both sides while the slope stays ``<= frac × peak slope`` (i.e. at least ``frac`` as steep).

    With ``smooth=0`` slopes are those of the segments and the window spans whole segments; with
    smoothing it is read on the fine grid (and widened by about σ on each side). ``drop_nats`` is
    ``loss(start) - loss(end)`` on the unsmoothed interpolant; ``drop_frac`` divides it by the run's
    total decrease (first minus last value). Use ``step_range`` to skip the initial descent.
    """
    _check_frac(frac)
    sm, y = _smoother(steps, loss, smooth, sigma, "steps", "loss")
    lo, hi = _check_range(step_range)
    return _loss_drop(sm, y, lo, hi, frac)


def alt_strategy_onset(
    steps: Any,
    loss: Any,
    uas: Any,
    *,
    uas_steps: Any = None,
    min_drop: float = DEFAULT_MIN_DROP,
    max_uas_rise: float = DEFAULT_MAX_UAS_RISE,
    frac: float = DEFAULT_FRAC,
    smooth: float = DEFAULT_SMOOTH,
    sigma: float | None = None,
    step_range: Sequence[float] | None = None,
) -> float | None:
    """Alternative-strategy onset: start of the steepest loss-drop window (:func:`loss_drop_window`)
    if the drop is ``>= min_drop`` nats and UAS rises by at most ``max_uas_rise`` inside it
    (max of the smoothed UAS over the window minus its value at the start); otherwise ``None``.

    ``uas_steps``: the steps of ``uas`` when they differ from the loss's ``steps``.
    """
    _check_frac(frac)
    sm_l, yl = _smoother(steps, loss, smooth, sigma, "steps", "loss")
    sm_u, yu = _smoother(steps if uas_steps is None else uas_steps, uas, smooth, sigma,
                         "steps" if uas_steps is None else "uas_steps", "uas")
    lo, hi = _check_range(step_range)
    drop = _loss_drop(sm_l, yl, lo, hi, frac)
    if not (drop.drop_nats >= min_drop):
        return None
    return drop.start if _uas_rise_during(sm_u, yu, drop.start, drop.end) <= max_uas_rise else None


# ----------------------------------------------------------------------------------------------
# Everything at once
# ----------------------------------------------------------------------------------------------


def _detect(
    sm_u: _Smoother | None,
    uas: np.ndarray | None,
    sm_l: _Smoother | None,
    loss: np.ndarray | None,
    lo: float,
    hi: float,
    frac: float,
    min_uas_rise: float,
    min_drop: float,
    max_uas_rise: float,
) -> dict[str, float]:
    out = dict.fromkeys(ONSET_KEYS, _NAN)
    if sm_u is not None:
        st = _structure(sm_u, uas, lo, hi)
        cap = _capabilities(sm_u, uas, lo, hi, st)
        rise = float(np.diff(np.interp([st, cap], sm_u.x, uas))[0]) if np.isfinite(cap) else _NAN
        if min_uas_rise > 0 and not rise >= min_uas_rise:  # no spike worth the name
            st = cap = _NAN
        out.update(structure_onset=st, capabilities_onset=cap, uas_rise=rise)
    if sm_l is not None:
        d = _loss_drop(sm_l, loss, lo, hi, frac)
        out.update(loss_drop_start=d.start, loss_drop_end=d.end, loss_drop_nats=d.drop_nats,
                   loss_drop_frac=d.drop_frac)
        if sm_u is not None and np.isfinite(d.start):
            r = _uas_rise_during(sm_u, uas, d.start, d.end)
            out["uas_rise_during_drop"] = r
            if d.drop_nats >= min_drop and r <= max_uas_rise:
                out["alt_strategy_onset"] = d.start
    return out


def detect_onsets(
    steps: Any,
    loss: Any = None,
    uas: Any = None,
    *,
    loss_steps: Any = None,
    uas_steps: Any = None,
    smooth: float = DEFAULT_SMOOTH,
    sigma: float | None = None,
    step_range: Sequence[float] | None = None,
    frac: float = DEFAULT_FRAC,
    min_uas_rise: float = 0.0,
    min_drop: float = DEFAULT_MIN_DROP,
    max_uas_rise: float = DEFAULT_MAX_UAS_RISE,
) -> dict[str, float]:
    """All onsets as one flat dict (keys :data:`ONSET_KEYS`; NaN where absent or not computable).

    - ``structure_onset``, ``capabilities_onset``: from ``uas`` (see those functions);
      ``uas_rise`` = UAS(capabilities) - UAS(structure) on the unsmoothed interpolant. With
      ``min_uas_rise > 0`` both onsets are NaN unless the rise reaches it (SAS- runs: no spike).
    - ``loss_drop_start``, ``loss_drop_end``, ``loss_drop_nats``, ``loss_drop_frac``: from ``loss``.
    - ``uas_rise_during_drop``, ``alt_strategy_onset``: need both (see :func:`alt_strategy_onset`).

    ``loss_steps`` / ``uas_steps`` give a metric's own steps (e.g. loss every N steps, UAS at
    checkpoints); otherwise ``steps`` is used. σ is resolved per metric from its own steps;
    ``smooth`` / ``sigma`` may be mappings by metric (``sigma={"loss": 500}``): a loss logged densely
    and noisily needs a σ in steps comparable to the drop's width, since one median gap is then tiny.
    """
    _check_frac(frac)
    lo, hi = _check_range(step_range)
    if steps is None and (loss is not None and loss_steps is None or uas is not None and uas_steps is None):
        raise ValueError("steps is required unless loss_steps / uas_steps are given for every metric")
    sm_u = sm_l = yu = yl = None
    if uas is not None:
        s_name = "steps" if uas_steps is None else "uas_steps"
        sm_u, yu = _smoother(steps if uas_steps is None else uas_steps, uas, smooth, sigma, s_name, "uas")
    if loss is not None:
        s_name = "steps" if loss_steps is None else "loss_steps"
        sm_l, yl = _smoother(steps if loss_steps is None else loss_steps, loss, smooth, sigma, s_name, "loss")
    return _detect(sm_u, yu, sm_l, yl, lo, hi, frac, min_uas_rise, min_drop, max_uas_rise)


# ----------------------------------------------------------------------------------------------
# Bootstrap intervals
# ----------------------------------------------------------------------------------------------


def _sample_matrix(name: str, a: Any, over: str, n_steps: int) -> np.ndarray:
    """Return samples as (n_steps, n_samples)."""
    m = _as_float_array(name, a, 2)
    if over == "seeds":  # (n_seeds, n_steps): a list of per-seed curves
        if m.shape[1] != n_steps:
            raise ValueError(f"{name} must have shape (n_seeds, {n_steps}) for over='seeds', got {m.shape}")
        m = m.T
    elif m.shape[0] != n_steps:
        raise ValueError(f"{name} must have shape ({n_steps}, n_items) for over='items', got {m.shape}")
    if m.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 {over} to resample, got {m.shape[1]}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} contains non-finite values")
    return m


def bootstrap_interval(
    steps: Any,
    *,
    uas: Any = None,
    loss: Any = None,
    over: str = "seeds",
    uas_steps: Any = None,
    loss_steps: Any = None,
    onsets: Iterable[str] | None = None,
    n_boot: int = 1000,
    level: float = DEFAULT_LEVEL,
    seed: int | None = 0,
    **detect_kwargs: Any,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval for each onset.

    ``over="seeds"``: ``uas`` / ``loss`` are per-seed curves, shape ``(n_seeds, n_steps)``. Each draw
    resamples seeds with replacement (the same seeds for loss and UAS, which must then have the same
    number of seeds), averages the curves and runs :func:`detect_onsets`.

    ``over="items"``: matrices of shape ``(n_steps, n_items)`` (per-sentence or per-chunk metric at
    each step). Each draw resamples items (columns) with replacement, averages them into a mean
    curve and detects. Loss and UAS items are resampled independently (different item sets).

    Returns ``{name: (low, high)}``: the ``(1-level)/2`` and ``(1+level)/2`` percentiles (default
    ``level=0.90``: 5th and 95th) over draws where that onset was found; ``(nan, nan)`` if never.
    ``onsets`` defaults to the step-valued keys present for the given metrics. ``seed`` makes the
    draws reproducible. ``detect_kwargs`` go to :func:`detect_onsets` (smooth, sigma, step_range, ...).
    """
    if over not in ("seeds", "items"):
        raise ValueError(f"over must be 'seeds' or 'items', got {over!r}")
    if not (0 < level < 1):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if uas is None and loss is None:
        raise ValueError("give uas and/or loss samples")
    smooth = detect_kwargs.pop("smooth", DEFAULT_SMOOTH)
    sigma = detect_kwargs.pop("sigma", None)
    lo, hi = _check_range(detect_kwargs.pop("step_range", None))
    frac = detect_kwargs.pop("frac", DEFAULT_FRAC)
    _check_frac(frac)
    rule = dict(
        min_uas_rise=detect_kwargs.pop("min_uas_rise", 0.0),
        min_drop=detect_kwargs.pop("min_drop", DEFAULT_MIN_DROP),
        max_uas_rise=detect_kwargs.pop("max_uas_rise", DEFAULT_MAX_UAS_RISE),
    )
    if detect_kwargs:
        raise ValueError(f"unknown detect_onsets arguments: {sorted(detect_kwargs)}")

    mats: dict[str, tuple[_Smoother, np.ndarray]] = {}
    for name, samples, own_steps in (("uas", uas, uas_steps), ("loss", loss, loss_steps)):
        if samples is None:
            continue
        s_name = "steps" if own_steps is None else f"{name}_steps"
        x = _check_steps(steps if own_steps is None else own_steps, s_name)
        mats[name] = (_Smoother(x, _resolve_sigma(x, smooth, sigma, name)), _sample_matrix(name, samples, over, x.size))
    if over == "seeds" and len(mats) == 2 and mats["uas"][1].shape[1] != mats["loss"][1].shape[1]:
        raise ValueError("uas and loss must have the same number of seeds (seeds are resampled jointly)")

    available = []
    if "uas" in mats:
        available += ["structure_onset", "capabilities_onset"]
    if "loss" in mats:
        available += ["loss_drop_start", "loss_drop_end"]
    if len(mats) == 2:
        available.append("alt_strategy_onset")
    names = list(available if onsets is None else onsets)
    unknown = [n for n in names if n not in ONSET_KEYS]
    if unknown:
        raise ValueError(f"onsets: unknown names {unknown}; choose from {list(ONSET_KEYS)}")

    rng = np.random.default_rng(seed)
    draws = np.full((int(n_boot), len(names)), np.nan)
    for b in range(int(n_boot)):
        means: dict[str, np.ndarray] = {}
        shared = None
        for name, (sm, m) in mats.items():
            if over == "seeds" and shared is not None:
                idx = shared
            else:
                idx = rng.integers(0, m.shape[1], m.shape[1])
                shared = idx
            means[name] = m[:, idx].mean(axis=1)
        u, l_ = mats.get("uas"), mats.get("loss")
        res = _detect(u[0] if u else None, means.get("uas"), l_[0] if l_ else None, means.get("loss"),
                      lo, hi, frac, **rule)
        draws[b] = [res[n] for n in names]

    q = 100.0 * np.array([(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    out = {}
    for j, n in enumerate(names):
        col = draws[:, j][np.isfinite(draws[:, j])]
        out[n] = (float(np.percentile(col, q[0])), float(np.percentile(col, q[1]))) if col.size else (_NAN, _NAN)
    return out


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------

DEFAULT_GROUPS = ("variant", "run", "seed")


def onset_table(
    df: Any,
    *,
    step: str = "step",
    uas: str | None = "uas",
    loss: str | None = "loss",
    by: Sequence[str] | str | None = None,
    **detect_kwargs: Any,
) -> Any:
    """One row per group with :func:`detect_onsets` results, from a tidy (wide) table.

    ``df`` has a ``step`` column, metric columns (``uas``, ``loss``; either may be missing) and
    optional grouping columns. ``by`` defaults to whichever of ``variant``, ``run``, ``seed`` exist
    (none: one row). Within a group each metric uses only its rows with finite values, so loss
    logged every N steps and UAS at checkpoints can share one table (NaN elsewhere); a metric with
    no finite value in a group gives NaN onsets. Rows with a repeated step raise ValueError naming the
    group. Output columns: the group columns, ``n_uas``, ``n_loss`` (points used) and
    :data:`ONSET_KEYS`.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if step not in df.columns:
        raise ValueError(f"df has no step column {step!r} (columns: {list(df.columns)})")
    metrics = {k: c for k, c in (("uas", uas), ("loss", loss)) if c is not None and c in df.columns}
    if not metrics:
        raise ValueError(f"df has none of the metric columns {[c for c in (uas, loss) if c]}")
    if by is None:
        by = [c for c in DEFAULT_GROUPS if c in df.columns]
    elif isinstance(by, str):
        by = [by]
    else:
        by = list(by)
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise ValueError(f"grouping columns {missing} are not in df")

    groups = df.groupby(by, sort=True, dropna=False) if by else [((), df)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{c}={v!r}" for c, v in zip(by, key)) or "the table"
        args: dict[str, Any] = {}
        counts = {"n_uas": 0, "n_loss": 0}
        for mname, col in metrics.items():
            sub = g[[step, col]]
            sub = sub[np.isfinite(pd.to_numeric(sub[col], errors="coerce").to_numpy(dtype=float))]
            if sub.empty:
                continue
            sub = sub.sort_values(step, kind="mergesort")
            dup = sub[step].duplicated()
            if dup.any():
                raise ValueError(f"{label}: step {sub[step][dup].iloc[0]!r} appears more than once for "
                                 f"{col!r}; add the distinguishing column to by=")
            args[mname] = sub[col].to_numpy(dtype=float)
            args[f"{mname}_steps"] = sub[step].to_numpy(dtype=float)
            counts[f"n_{mname}"] = len(sub)
        try:
            res = detect_onsets(None, **args, **detect_kwargs) if args else dict.fromkeys(ONSET_KEYS, _NAN)
        except ValueError as e:
            raise ValueError(f"{label}: {e}") from e
        rows.append({**dict(zip(by, key)), **counts, **res})
    return pd.DataFrame(rows, columns=[*by, "n_uas", "n_loss", *ONSET_KEYS])


def loss_bend_window(
    steps: Any, loss: Any, *, smooth: float = DEFAULT_SMOOTH, sigma: float | None = None,
    step_range: Sequence[float] | None = None,
) -> tuple[float, float, float]:
    """A sudden drop read by the acceleration rule: ``(start, end, drop_nats)``.

    ``start`` = the step of the most negative acceleration of the loss (a plateau bending into a
    descent), ``end`` = the most positive acceleration after it (the descent flattening out); the
    same rule as the structure and capabilities onsets, applied to ``-loss``. Unlike the steepest
    descent, it cannot be captured by the initial decay from the uniform prediction, which is convex
    throughout (positive acceleration only). ``drop_nats`` = loss(start) - loss(end), unsmoothed.
    """
    sm, y = _smoother(steps, loss, smooth, sigma, "steps", "loss")
    lo, hi = _check_range(step_range)
    start = _structure(sm, -y, lo, hi)
    end = _capabilities(sm, -y, lo, hi, start)
    if not (np.isfinite(start) and np.isfinite(end)):
        return _NAN, _NAN, _NAN
    return start, end, float(np.interp(start, sm.x, y) - np.interp(end, sm.x, y))


CRITERIA = ("drop_ok", "uas_ok", "beats_offset", "onset_ok", "blimp_ok")  # transition_report's verdicts
UAS_BEFORE_MAX, UAS_AFTER_MIN = 0.15, 0.30  # uas_ok: the SAS scalar before the transition and after the drop
DROP_MIN_NATS, DROP_MAX_FRAC = 0.5, 0.2  # drop_ok: the loss bend's size and its window's share of the run


def timing(reports: Any) -> Any:
    """Where ▲ sits in the loss drop, for rows of :func:`transition_report` (one per run).

    Returns a copy with ``lead`` = ``bend_start - structure_onset`` (steps; > 0: ▲ comes first),
    ``width`` = ``capabilities_onset - structure_onset`` (the SAS spike, ▲ to ●) and
    ``lead_frac`` = ``lead / width``; where every column of :data:`CRITERIA` is present, also
    ``all_ok`` (every criterion holds) and ``misses`` (the failing criteria, comma-separated); a criterion without a
    verdict (NaN, as :func:`report_table` leaves for a run too short to judge) counts as failing.
    """
    out = reports.copy()
    out["lead"] = out.bend_start - out.structure_onset
    out["width"] = out.capabilities_onset - out.structure_onset
    out["lead_frac"] = out.lead / out.width
    if all(c in out for c in CRITERIA):
        ok = out[list(CRITERIA)].fillna(False).astype(bool)  # no verdict (a run too short to judge): not met
        out["all_ok"] = ok.all(axis=1)
        out["misses"] = [", ".join(c for c in CRITERIA if not row[c]) for _, row in ok.iterrows()]
    return out


def never_left_plateau(reports: Any, loss_above: float = 6.2, sas_below: float = 0.15) -> Any:
    """Which runs (rows of :func:`transition_report`) never left the plateau: a boolean Series, True where the final
    held-out loss is still above ``loss_above`` nats and the final SAS scalar below ``sas_below``.

    The defaults fit the presets' Wikipedia sample: its plateau sits at 6.3-6.4 nats (unigram entropy 6.95), and heads
    at initialisation score 0.11-0.15. Such a run has no onset to read, whatever the detectors return for it.
    """
    return (reports["loss_final"] > loss_above) & (reports["uas_final"] < sas_below)


def miss_counts(reports: Any) -> str:
    """How often each criterion of :data:`CRITERIA` fails over rows of :func:`transition_report`, as text:
    ``"uas_ok in 3; onset_ok in 1"`` (``"none"`` if every row meets every criterion)."""
    fails = [(c, int((~reports[c].astype(bool)).sum())) for c in CRITERIA]
    return "; ".join(f"{c} in {n}" for c, n in fails if n) or "none"


def report_table(logs: Any, **detect_kwargs: Any) -> Any:
    """:func:`transition_report` of every run of a metrics table (rows with a ``run`` column, as
    :func:`sasutils.experiments.collect` returns them): one row per run, in first-appearance order. A run too short to
    judge gets its reason in an ``error`` column instead of a verdict."""
    import pandas as pd

    rows = []
    for run, log in logs.groupby("run", sort=False):
        try:
            rows.append({"run": run, **transition_report(log, **detect_kwargs)})
        except ValueError as e:  # too few points to judge (a run stopped very early)
            rows.append({"run": run, "error": str(e)})
    return pd.DataFrame(rows)


def criteria_table(reports: Any, by: str | Sequence[str]) -> Any:
    """The verdicts of many runs at a glance: one row per ``by`` group of :func:`transition_report` rows.

    Columns: ``runs``; ``finished`` (runs that reached their last step, where ``reports`` has a ``finished`` column); for each criterion of :data:`CRITERIA` the number of runs that meet it; ``all_ok`` (every
    criterion); and the medians over the group's runs of ▲ (``structure_onset``), the loss bend's start, SAS before the
    transition and after the drop (``uas_before``, ``uas_after``) and ▲'s lead over the bend (``lead``, steps; from
    :func:`timing`). A run without a verdict on some criterion (no reading) counts as not meeting it.
    Groups keep their first-appearance order.
    """
    import pandas as pd

    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, *CRITERIA, "structure_onset", "bend_start", "uas_before", "uas_after"] if c not in reports]
    if missing:
        raise ValueError(f"criteria_table: reports lack column(s) {missing}")
    t = timing(reports)
    rows = []
    for key, g in t.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        ok = g[list(CRITERIA)].fillna(False).astype(bool)
        done = {"finished": int(g.finished.fillna(False).astype(bool).sum())} if "finished" in g else {}
        rows.append({**dict(zip(by, key)), "runs": len(g), **done, **{c: int(ok[c].sum()) for c in CRITERIA},
                     "all_ok": int(g.all_ok.sum()),
                     **{c: float(g[c].median()) for c in ("structure_onset", "bend_start", "lead", "uas_before", "uas_after")}})
    return pd.DataFrame(rows)


def _at_or_before(df: Any, col: str, step: float) -> float:
    """``df[col]`` at the last row with ``step <= step`` (rows sorted by step); NaN if none or ``step`` is NaN."""
    d = df[df.step <= step] if np.isfinite(step) else df.iloc[:0]
    return float(d[col].iloc[-1]) if len(d) else _NAN


def before_transition(reports: Any, table: Any, col: str) -> Any:
    """Another reading "before the transition", as ``uas_ok`` takes it: for each run (rows of
    :func:`transition_report`), ``table[col]`` at the last row of that run with ``step`` at or before the earlier
    of ▲ and the loss bend (e.g. a per-checkpoint table of :mod:`sasutils.measure`, whose steps are coarser than
    the log's); rows where ``col`` is NaN are skipped, as ``uas_ok`` skips steps without a SAS reading. A Series
    indexed by run; NaN where the run has no such row or no transition."""
    import pandas as pd

    out = {}
    for _, r in reports.iterrows():
        g = table[table.run == r.run].dropna(subset=[col]).sort_values("step")  # as uas_ok: readings only
        out[r.run] = _at_or_before(g, col, float(np.nanmin([r.bend_start, r.structure_onset, np.inf])))
    return pd.Series(out, name=col, dtype=float)


def after_transition(reports: Any, table: Any, col: str) -> Any:
    """Another reading "after the drop", as ``uas_ok`` takes it: for each run (rows of :func:`transition_report`),
    the highest ``table[col]`` of that run at or after the end of the loss bend (``bend_end``), e.g. from a
    per-checkpoint table of :mod:`sasutils.measure`. A Series indexed by run; NaN where the run has no such row
    or no bend."""
    import pandas as pd

    out = {r.run: table[(table.run == r.run) & (table.step >= r.bend_end)][col].max() for _, r in reports.iterrows()}
    return pd.Series(out, name=col, dtype=float)


def transition_report(log: Any, skip_frac: float = 0.1, **detect_kwargs: Any) -> dict[str, Any]:
    """Did a run show the phase transition? Onsets plus the small-regime criteria, as one flat dict.

    ``log``: one run's metrics table (``step``, ``eval_loss``, ``sas_uas``; optional ``offset_best``,
    ``offset_edge_best``, ``blimp_mean``). The first ``skip_frac`` of the run (the initial descent from the uniform
    prediction, always the steepest) is excluded from the search. ``detect_kwargs`` go to
    :func:`detect_onsets`; its ``smooth`` / ``sigma`` also set the bend rule's σ. Criteria (the
    small-regime issue):

    - ``drop_ok``: the loss drop (:func:`loss_bend_window`: plateau bending into a descent, then
      flattening) loses >= 0.5 nats within <= 20 % of the run (``bend_*``; the steepest-descent
      window of :func:`detect_onsets` is reported too, as ``loss_drop_*``);
    - ``uas_ok``: SAS scalar <= 0.15 before the transition (at the last evaluation at or before the
      earlier of the structure onset and the drop's start: a reading taken at ▲ itself counts as before)
      and >= 0.30 after the drop;
    - ``beats_offset``: the final SAS scalar exceeds the best fixed-offset baseline (and, reported beside
      the criteria where the log has ``offset_edge_best``: ``beats_edge``, the same against the offsets with
      the edge rule of :func:`sasutils.sas.offset_correct`, which a positional head also follows);
    - ``onset_ok``: the structure onset lies within one evaluation interval of the drop's start;
    - ``blimp_ok``: BLiMP at the end exceeds BLiMP at the structure onset.
    """
    import pandas as pd

    if not isinstance(log, pd.DataFrame) or "step" not in log or "eval_loss" not in log:
        raise ValueError("log must be a metrics table with step and eval_loss columns")
    steps = log.step.to_numpy(float)
    total = steps.max()
    loss = log[["step", "eval_loss"]].dropna()
    uas = log[["step", "sas_uas"]].dropna() if "sas_uas" in log else None
    found = detect_onsets(None, loss=loss.eval_loss.values, loss_steps=loss.step.values,
                          uas=None if uas is None else uas.sas_uas.values,
                          uas_steps=None if uas is None else uas.step.values,
                          step_range=(skip_frac * total, None), **detect_kwargs)
    interval = float(np.median(np.diff(uas.step.values))) if uas is not None and len(uas) > 1 else _NAN
    rep: dict[str, Any] = dict(found)
    # The criteria read the drop by the acceleration rule (see loss_bend_window): in runs this short the
    # steepest-descent window is often the tail of the initial decay, not a drop after a plateau.
    smoothing = {k: detect_kwargs[k] for k in ("smooth", "sigma") if k in detect_kwargs}  # same σ as the onsets
    start, end, nats = loss_bend_window(loss.step.values, loss.eval_loss.values,
                                        step_range=(skip_frac * total, None), **smoothing)
    rep.update(bend_start=start, bend_end=end, bend_nats=nats)
    rep["eval_interval"] = interval
    rep["loss_start_of_drop"] = _at_or_before(loss, "eval_loss", start)
    rep["loss_final"] = float(loss.eval_loss.iloc[-1])
    rep["drop_window_frac"] = (end - start) / total if np.isfinite(start) else _NAN
    if uas is not None:
        # "before the transition" = before whichever onset (UAS spike or loss bend) comes first
        rep["uas_before"] = _at_or_before(uas, "sas_uas", np.nanmin([start, found["structure_onset"], np.inf]))
        after = uas[uas.step >= end] if np.isfinite(end) else uas.iloc[:0]
        rep["uas_after"] = float(after.sas_uas.max()) if len(after) else _NAN
        rep["uas_final"] = float(uas.sas_uas.iloc[-1])
    if "offset_best" in log and log.offset_best.notna().any():
        rep["offset_best"] = float(log.offset_best.dropna().iloc[-1])
    if "offset_edge_best" in log and log.offset_edge_best.notna().any():
        rep["offset_edge"] = float(log.offset_edge_best.dropna().iloc[-1])
    if "blimp_mean" in log and log.blimp_mean.notna().any():
        b = log[["step", "blimp_mean"]].dropna()
        rep["blimp_at_onset"] = _at_or_before(b, "blimp_mean", found["structure_onset"])
        rep["blimp_final"] = float(b.blimp_mean.iloc[-1])
    rep["drop_ok"] = bool(nats >= DROP_MIN_NATS and rep["drop_window_frac"] <= DROP_MAX_FRAC)
    rep["uas_ok"] = bool(rep.get("uas_before", _NAN) <= UAS_BEFORE_MAX and rep.get("uas_after", _NAN) >= UAS_AFTER_MIN)
    rep["beats_offset"] = bool(rep.get("uas_final", _NAN) > rep.get("offset_best", np.inf))
    if "offset_edge" in rep:  # not one of CRITERIA (the issue names the plain offset); reported beside it
        rep["beats_edge"] = bool(rep.get("uas_final", _NAN) > rep["offset_edge"])
    rep["onset_ok"] = bool(abs(found["structure_onset"] - start) <= interval)  # vs the drop's start
    rep["blimp_ok"] = bool(rep.get("blimp_final", _NAN) > rep.get("blimp_at_onset", np.inf))
    return rep


def criteria_in_words(report: Any) -> str:
    """One run's small-regime verdicts as lines of text: each criterion of :func:`transition_report` with ✓ or ✗,
    the readings it rests on and the threshold it needs, after a first line that counts the criteria that hold.

    ``report``: a dict (or a row of :func:`report_table`, also as read back from a CSV) with
    :func:`transition_report`'s keys. A reading the run's log did not have is shown as "n/a" and a verdict without a
    value (NaN, None, ``pd.NA``, "") as failing, as the report counts it; a row that :func:`report_table` could not
    judge (its ``error``) says so. A reading is printed with as many digits as it takes to tell it from the threshold
    or reading it is compared with.
    """
    r = dict(report)
    error = r.get("error")
    if isinstance(error, str) and error:
        return f"not judged: {error}"
    missing = [c for c in CRITERIA if c not in r]
    if missing:
        raise ValueError(f"report lacks the verdicts {missing}: pass a dict from transition_report")

    def val(key: str) -> float:  # NaN for anything that is not a finite number (None, NaN, pd.NA, text)
        try:
            v = float(r.get(key))
        except (TypeError, ValueError):
            return _NAN
        return v if np.isfinite(v) else _NAN

    def num(v: float, digits: int, against: float = _NAN) -> str:
        if math.isnan(v):
            return "n/a"
        while digits < 8 and v != against and round(v, digits) == round(against, digits):
            digits += 1  # a reading just over its threshold must not print as the threshold
        return f"{v:,.{digits}f}"

    def mark(c: str) -> str:
        v = r[c]
        if isinstance(v, str):  # a CSV read back as text
            held = v.strip().lower() == "true"
        else:
            try:
                held = v is not None and not bool(v != v) and bool(v)  # v != v: NaN of any float type
            except TypeError:  # pd.NA: no truth value
                held = False
        return "✓" if held else "✗"

    onset, start, frac = val("structure_onset"), val("bend_start"), val("drop_window_frac")
    drop = (f"{num(val('bend_nats'), 2, DROP_MIN_NATS)} nats over steps {num(start, 0)}–{num(val('bend_end'), 0)} "
            f"({num(100 * frac, 1, 100 * DROP_MAX_FRAC)} % of the run)" if not math.isnan(frac)
            else "no bend of the loss found")
    if math.isnan(onset):
        where = "not found"
    elif math.isnan(start):
        where = f"at step {onset:,.0f}; no loss bend to compare it with"
    else:
        lead = start - onset
        where = f"at step {onset:,.0f}, " + (f"{abs(lead):,.0f} steps {'before' if lead > 0 else 'after'} the start "
                                             f"of the loss bend" if lead else "at the start of the loss bend")
    final, offset = val("uas_final"), val("offset_best")
    lines = [
        f"{mark('drop_ok')} loss drop: {drop}; needs ≥ {DROP_MIN_NATS:g} nats within ≤ {100 * DROP_MAX_FRAC:g} % of "
        f"the run",
        f"{mark('uas_ok')} SAS: {num(val('uas_before'), 3, UAS_BEFORE_MAX)} before the transition, peak "
        f"{num(val('uas_after'), 3, UAS_AFTER_MIN)} after the drop; needs ≤ {UAS_BEFORE_MAX:g} before and "
        f"≥ {UAS_AFTER_MIN:g} after",
        f"{mark('beats_offset')} final SAS {num(final, 3, offset)} against the best fixed-offset baseline "
        f"{num(offset, 3, final)}; needs to be above it",
        f"{mark('onset_ok')} structure onset ▲ {where}; needs to be within one evaluation interval "
        f"({num(val('eval_interval'), 0)} steps) of it",
        f"{mark('blimp_ok')} BLiMP: {num(val('blimp_at_onset'), 3, val('blimp_final'))} at ▲, "
        f"{num(val('blimp_final'), 3, val('blimp_at_onset'))} at the end; needs to rise",
    ]
    held = sum(line.startswith("✓") for line in lines)
    head = f"{held} of {len(CRITERIA)} criteria hold" + (": the transition, by every criterion"
                                                         if held == len(CRITERIA) else "")
    return "\n".join([head, *lines])


def restated_criteria(reports: Any, logs: Any) -> Any:
    """Two restatements of the small-regime criteria, measured beside them and not applied (the criteria are the
    issue's; :func:`transition_report` keeps them as written).

    ``reports``: rows of :func:`timing` (``run``, ``structure_onset``, ``bend_start``, ``lead``, ``eval_interval``,
    ``uas_before``, ``uas_after`` and :data:`CRITERIA`); ``logs``: their metrics tables (``run``, ``step``,
    ``sas_uas``), one run per name. Returns a copy with:

    - ``on_reading``: the earlier of ▲ and the loss bend is an evaluation step, so ``uas_before`` is the reading taken
      there, which has often caught the start of the rise;
    - ``uas_before_strict``: the last reading strictly before that step (``uas_before`` where it is no evaluation
      step), and ``uas_ok_strict`` / ``all_ok_strict``: the SAS criterion / every criterion with it;
    - ``onset_ok_2x`` / ``all_ok_2x``: the onset rule / every criterion with ▲ allowed within two evaluation
      intervals of the bend instead of one (``|lead| <= 2 * eval_interval``).
    """
    out = reports.copy()
    uas = logs.dropna(subset=["sas_uas"])
    first = out[["structure_onset", "bend_start"]].min(axis=1)
    on, strict = [], []
    for run, step in zip(out.run, first):
        g = uas[uas.run == run]
        on.append(bool((g.step == step).any()))
        before = g[g.step < step].sas_uas
        strict.append(float(before.iloc[-1]) if on[-1] and len(before) else _NAN)
    out["on_reading"] = on
    out["uas_before_strict"] = np.where(on, strict, out.uas_before)

    def others(skip: str) -> Any:  # every criterion of CRITERIA but ``skip``
        return out[[c for c in CRITERIA if c != skip]].astype(bool).all(axis=1)

    out["uas_ok_strict"] = (out.uas_before_strict <= UAS_BEFORE_MAX) & (out.uas_after >= UAS_AFTER_MIN)
    out["all_ok_strict"] = out.uas_ok_strict & others("uas_ok")
    out["onset_ok_2x"] = out.lead.abs() <= 2 * out.eval_interval
    out["all_ok_2x"] = out.onset_ok_2x & others("onset_ok")
    return out


def before_thresholds(reports: Any, logs: Any, before_max: Sequence[float] = (0.15, 0.16, 0.17, 0.18),
                      rise_max: Sequence[float] = (0.04, 0.05, 0.06, 0.07)) -> Any:
    """Every criterion at other limits for "SAS before the transition", measured beside the issue's and not applied.

    Two kinds of limit on the same reading (``uas_before``, as :func:`transition_report` takes it):

    - ``kind="before"``: SAS before <= ``t`` for each ``t`` in ``before_max`` (the issue's is
      :data:`UAS_BEFORE_MAX`);
    - ``kind="rise"``: SAS before - SAS at step 0 <= ``t`` for each ``t`` in ``rise_max``: the rise above the run's own
      first reading, which it subtracts (that reading is the uniform-attention floor of the tokenizer and the
      sentences plus what the initialisation adds). The difference of two floats is compared as it is, so a rise
      that equals a limit in print may fall either side of it.

    "SAS >= 0.30 after" and the other criteria stay as they are. ``reports``: rows of :func:`transition_report`
    (``run``, ``uas_before``, ``uas_after`` and :data:`CRITERIA`); ``logs``: their metrics tables (``run``,
    ``step``, ``sas_uas``). Returns one row per run, kind and limit: ``run``, ``kind``, ``limit``, ``sas_0`` (the
    first SAS reading, at step 0), ``value`` (what is compared: SAS before, or its rise above ``sas_0``),
    ``uas_ok`` and ``all_ok``. Raises ``ValueError`` naming a run whose log has no SAS reading at step 0.
    """
    import pandas as pd

    uas = logs.dropna(subset=["sas_uas"])
    first = uas[uas.step == 0].drop_duplicates("run").set_index("run").sas_uas
    missing = sorted(set(reports.run) - set(first.index))
    if missing:
        raise ValueError(f"no SAS reading at step 0 in the logs of {', '.join(map(str, missing))}")
    ok = reports[list(CRITERIA)].fillna(False).astype(bool)
    others = ok.drop(columns="uas_ok").all(axis=1).to_numpy()
    sas_0 = first.loc[reports.run].to_numpy()
    after_ok = (reports.uas_after >= UAS_AFTER_MIN).to_numpy()  # NaN: no drop to read after, not met
    rows = []
    for kind, limits, value in (("before", before_max, reports.uas_before.to_numpy()),
                                ("rise", rise_max, reports.uas_before.to_numpy() - sas_0)):
        for t in limits:
            met = (value <= t) & after_ok  # NaN before: no transition to read before, not met
            rows.append(pd.DataFrame(dict(run=reports.run.to_numpy(), kind=kind, limit=float(t), sas_0=sas_0,
                                          value=value, uas_ok=met, all_ok=met & others)))
    return pd.concat(rows, ignore_index=True)


def soft_onsets(reports: Any, logs: Any, skip_frac: float = 0.1) -> Any:
    """▲ read on the soft SAS score instead of the argmax one: a diagnostic beside the onset rule, not applied.

    The SAS scalar counts a head's argmax on the gold parent, so a head that only slightly prefers its parent
    already scores; the soft score ``sas_soft`` (the best head's mean attention mass on the parent) grows only
    as the attention sharpens. ``reports``: rows of :func:`timing` (``run``, ``bend_start``, ``eval_interval``);
    ``logs``: their metrics tables (``run``, ``step``, ``sas_soft``), one run per name. The search skips the
    first ``skip_frac`` of each run, as :func:`transition_report` does. Returns a copy with ``soft_onset``
    (:func:`structure_onset` of ``sas_soft``, default smoothing), ``soft_lead = bend_start - soft_onset``,
    ``soft_onset_ok`` (``|soft_lead| <= eval_interval``, the onset rule with the soft ▲) and ``uas_before_soft``:
    the SAS scalar (argmax, ``sas_uas``) at the last evaluation at or before the earlier of the soft ▲ and the
    bend, i.e. what "SAS <= 0.15 before" would read with the soft ▲.
    """
    out = reports.copy()
    onset, before = [], []
    for run, bend in zip(out.run, out.bend_start):
        g = logs[logs.run == run]
        soft = g.dropna(subset=["sas_soft"]).sort_values("step")
        if len(soft) < MIN_POINTS:
            raise ValueError(f"run {run!r}: sas_soft needs at least {MIN_POINTS} readings, got {len(soft)}")
        onset.append(structure_onset(soft.step.values, soft.sas_soft.values,
                                     step_range=(skip_frac * float(g.step.max()), None)))
        before.append(_at_or_before(g.dropna(subset=["sas_uas"]).sort_values("step"), "sas_uas",
                                    np.nanmin([onset[-1], bend, np.inf])))
    out["soft_onset"] = onset
    out["soft_lead"] = out.bend_start - out.soft_onset
    out["soft_onset_ok"] = out.soft_lead.abs() <= out.eval_interval
    out["uas_before_soft"] = before
    return out
