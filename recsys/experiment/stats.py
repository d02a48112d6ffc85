"""A/B test statistics on sufficient statistics (the decision rule is in :mod:`decision`).

The analysis job aggregates per-user rows in Spark into :class:`Moments` per (market, arm,
metric) and brings those few numbers to the driver; everything here works on them, never on
user-level arrays, so it is plain numpy/scipy and independent of the data size.

- :func:`compare`: treatment against control, as a difference of means with a normal (Welch z)
  interval, a relative lift by the delta method, and optionally CUPED (Deng et al. 2013), which
  removes the part of the metric predicted by its pre-period value.
- :func:`mean_interval`: the interval of one arm's mean.
- :func:`srm_p_value`: the sample ratio mismatch check on users per arm.
- :func:`adjust_p_values`: Benjamini-Hochberg across markets.
- :func:`required_users_per_arm`: the sample size that detects the minimum effect.

What cannot be computed (an arm with fewer than two users, no variance at all, a zero control
mean for a relative lift) comes back as nan rather than an exception, so one thin market does
not stop the report of the others.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

NAN = float("nan")


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of one arm for a per-user metric y and its pre-period covariate x.

    These are plain sums so that Spark can compute them in one aggregation and markets pool by
    adding them. The x sums stay 0 when the metric has no covariate.
    """

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float = 0.0
    sum_x2: float = 0.0
    sum_xy: float = 0.0

    @property
    def mean_y(self) -> float:
        return self.sum_y / self.n if self.n > 0 else NAN

    @property
    def mean_x(self) -> float:
        return self.sum_x / self.n if self.n > 0 else NAN

    @property
    def var_y(self) -> float:
        """Sample variance (ddof=1); 0 when n < 2."""
        return self._co(self.sum_y2, self.sum_y, self.sum_y)

    @property
    def var_x(self) -> float:
        """Sample variance (ddof=1); 0 when n < 2."""
        return self._co(self.sum_x2, self.sum_x, self.sum_x)

    @property
    def cov_xy(self) -> float:
        """Sample covariance (ddof=1); 0 when n < 2."""
        return self._co(self.sum_xy, self.sum_x, self.sum_y, clip=False)

    def _co(self, sum_uv: float, sum_u: float, sum_v: float, *, clip: bool = True) -> float:
        # The sum-of-squares form loses digits only when the mean dwarfs the spread by ~1e7,
        # far from rates and revenues; clipping keeps rounding from making a variance negative.
        if self.n < 2:
            return 0.0
        value = (sum_uv - sum_u * sum_v / self.n) / (self.n - 1)
        return max(value, 0.0) if clip else value

    def __add__(self, other: object) -> Moments:
        """Pool two groups of users (e.g. two markets) as one."""
        if not isinstance(other, Moments):
            return NotImplemented
        return Moments(
            n=self.n + other.n,
            sum_y=self.sum_y + other.sum_y,
            sum_y2=self.sum_y2 + other.sum_y2,
            sum_x=self.sum_x + other.sum_x,
            sum_x2=self.sum_x2 + other.sum_x2,
            sum_xy=self.sum_xy + other.sum_xy,
        )

    @classmethod
    def of(cls, y: np.ndarray, x: np.ndarray | None = None) -> Moments:
        """The moments of user-level arrays, for tests and small data."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise ValueError(f"y must be one-dimensional, got shape {y.shape}")
        if x is None:
            return cls(n=y.size, sum_y=float(y.sum()), sum_y2=float(y @ y))
        x = np.asarray(x, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(f"x has shape {x.shape} but y has shape {y.shape}")
        return cls(
            n=y.size,
            sum_y=float(y.sum()),
            sum_y2=float(y @ y),
            sum_x=float(x.sum()),
            sum_x2=float(x @ x),
            sum_xy=float(x @ y),
        )


@dataclass(frozen=True)
class Comparison:
    """Treatment (a) against control (b) on one metric.

    With CUPED, ``mean_a`` and ``mean_b`` are the adjusted means, so ``lift == mean_a - mean_b``
    holds either way. Intervals are two-sided at the ``level`` given to :func:`compare`.
    """

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    lift: float
    lift_low: float
    lift_high: float
    rel_lift: float
    rel_low: float
    rel_high: float
    p_value: float
    se: float
    variance_reduction: float | None
    theta: float | None


def compare(a: Moments, b: Moments, *, level: float = 0.95, cuped: bool = False) -> Comparison:
    """Treatment ``a`` against control ``b``: absolute and relative lift, interval and p-value.

    The standard error is unpooled (Welch), so arms of different size and spread are fine; the
    normal approximation is what makes sufficient statistics enough, and at the thousands of
    users per arm an experiment needs it matches Welch's t. With ``cuped=True`` the metric is
    ``y - theta * (x - mean x)``, theta fitted on both arms together so that it does not depend
    on the treatment; since x is measured before assignment the lift stays unbiased while its
    variance drops by about corr(x, y)^2.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    z = _z(level)
    raw = _estimate(a.mean_y, a.var_y, a.n, b.mean_y, b.var_y, b.n, z)
    if not cuped:
        return raw

    pooled = a + b
    theta = pooled.cov_xy / pooled.var_x if pooled.var_x > 0 else 0.0
    mean_a, var_a = _adjusted(a, theta, pooled.mean_x)
    mean_b, var_b = _adjusted(b, theta, pooled.mean_x)
    adjusted = _estimate(mean_a, var_a, a.n, mean_b, var_b, b.n, z)
    reduction = 1.0 - (adjusted.se / raw.se) ** 2 if raw.se > 0 else NAN
    return dataclasses.replace(adjusted, variance_reduction=reduction, theta=theta)


def mean_interval(m: Moments, *, level: float = 0.95) -> tuple[float, float]:
    """Two-sided normal interval for one arm's mean, e.g. a policy's value in a report.

    (nan, nan) when it cannot be computed (fewer than two users, or no spread), as in
    :func:`compare`.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    se = math.sqrt(m.var_y / m.n) if m.n >= 2 else NAN
    if not se > 0:
        return NAN, NAN
    return m.mean_y - _z(level) * se, m.mean_y + _z(level) * se


@lru_cache(maxsize=8)
def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def _adjusted(m: Moments, theta: float, pooled_mean_x: float) -> tuple[float, float]:
    """Mean and variance of y - theta * (x - pooled mean x) in one arm."""
    if theta == 0.0:  # no covariate: exactly the raw figures
        return m.mean_y, m.var_y
    mean = m.mean_y - theta * (m.mean_x - pooled_mean_x)
    var = m.var_y - 2 * theta * m.cov_xy + theta**2 * m.var_x
    return mean, max(var, 0.0)


def _estimate(
    mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int, z: float
) -> Comparison:
    """The lift of ``a`` over ``b`` from their means and variances (no CUPED figures)."""
    lift = mean_a - mean_b
    se = math.sqrt(var_a / n_a + var_b / n_b) if n_a >= 2 and n_b >= 2 else NAN
    lift_low, lift_high, p_value = NAN, NAN, NAN
    if se > 0:  # False for nan too: no spread, no interval
        lift_low, lift_high = lift - z * se, lift + z * se
        p_value = float(2 * stats.norm.sf(abs(lift) / se))

    rel_lift, rel_low, rel_high = NAN, NAN, NAN
    if mean_b != 0 and math.isfinite(mean_b):
        rel_lift = mean_a / mean_b - 1
        if se > 0:  # so n_a, n_b >= 2
            # Delta method for the ratio of two independent means.
            rel_se = math.sqrt(var_a / (n_a * mean_b**2) + mean_a**2 * var_b / (n_b * mean_b**4))
            rel_low, rel_high = rel_lift - z * rel_se, rel_lift + z * rel_se
    return Comparison(
        n_a,
        n_b,
        mean_a,
        mean_b,
        lift,
        lift_low,
        lift_high,
        rel_lift,
        rel_low,
        rel_high,
        p_value,
        se,
        variance_reduction=None,
        theta=None,
    )


def srm_p_value(counts: Mapping[str, int], shares: Mapping[str, float]) -> float:
    """Chi-square p-value of the users per arm against the configured shares.

    A small p-value means users were lost or misrouted between assignment and measurement,
    which biases every comparison. Arms with share 0 are not tested, but users in such an arm,
    or in an arm not configured at all, mean assignment is broken outright: 0.0. No users at
    all, or fewer than two arms to compare: nan.
    """
    if any(not share >= 0 for share in shares.values()):  # also catches nan
        raise ValueError(f"shares must be non-negative, got {dict(shares)}")
    arms = [arm for arm, share in shares.items() if share > 0]
    if any(count > 0 and arm not in arms for arm, count in counts.items()):
        return 0.0
    observed = np.array([counts.get(arm, 0) for arm in arms], dtype=np.float64)
    total = observed.sum()
    if total == 0 or len(arms) < 2:
        return NAN
    weights = np.array([shares[arm] for arm in arms], dtype=np.float64)
    expected = total * weights / weights.sum()
    return float(stats.chisquare(observed, expected).pvalue)


def adjust_p_values(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values, across markets tested on the same metric.

    Controls the false discovery rate when one experiment is read in many markets; nan entries
    (markets that could not be tested) stay nan and do not count in the family.
    """
    values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(values.shape, NAN)
    known = ~np.isnan(values)
    if known.any():
        adjusted[known] = stats.false_discovery_control(values[known], method="bh")
    return adjusted.tolist()


def required_users_per_arm(
    baseline_mean: float,
    var_a: float,
    var_b: float,
    *,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Users per arm to detect a relative lift ``mde`` of ``baseline_mean`` (0.02 = +2%).

    Two-sided z test at ``alpha`` with the given power:
    n = (z_{1-alpha/2} + z_power)^2 * (var_a + var_b) / (mde * baseline_mean)^2, rounded up,
    and at least 2, the fewest users an arm needs for a variance.
    """
    if not (math.isfinite(baseline_mean) and baseline_mean != 0):
        raise ValueError(
            f"baseline_mean must be finite and non-zero to size a relative effect, "
            f"got {baseline_mean}"
        )
    if not (math.isfinite(mde) and mde != 0):
        raise ValueError(f"mde must be a finite, non-zero relative lift, got {mde}")
    if not (var_a >= 0 and var_b >= 0 and math.isfinite(var_a + var_b)):
        raise ValueError(f"variances must be finite and non-negative, got {var_a}, {var_b}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n = z**2 * (var_a + var_b) / (mde * baseline_mean) ** 2
    return max(math.ceil(n), 2)
