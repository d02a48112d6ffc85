"""A/B statistics proven by simulation: user-level data whose truth is planted, reduced to Moments.

Each simulation is seeded; tolerances are three binomial standard errors of the share being
checked, so with a new seed a correct implementation fails each of them about once in 400 runs
and a wrong one (e.g. a pooled or forgotten variance term) fails them by far.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from recsys.experiment.decision import guardrail_verdict, success_verdict
from recsys.experiment.stats import (
    Moments,
    adjust_p_values,
    compare,
    mean_interval,
    required_users_per_arm,
    srm_p_value,
)


def tolerance(share: float, reps: int) -> float:
    """Three binomial standard errors of an observed share over ``reps`` replicates."""
    return 3 * math.sqrt(share * (1 - share) / reps)


def summary(n: int, mean: float, var: float) -> Moments:
    """Moments of an arm given its size, mean and sample variance (no covariate)."""
    return Moments(n=n, sum_y=n * mean, sum_y2=(n - 1) * var + n * mean**2)


def covers(low: float, high: float, truth: float) -> bool:
    return low <= truth <= high


# --- the metrics of the simulated world: each returns (y, x) per user, x the pre-period value


def conversions(rng: np.random.Generator, shape: tuple[int, ...], lift: float = 0.0):
    """0/1 conversions around 5%, pre- and post-period sharing each user's propensity."""
    propensity = rng.beta(0.5, 9.5, size=shape)  # mean 0.05
    x = rng.random(shape) < propensity
    y = rng.random(shape) < propensity * (1 + lift)
    return y.astype(np.float64), x.astype(np.float64)


def revenue(rng: np.random.Generator, shape: tuple[int, ...], lift: float = 0.0):
    """Zero-inflated lognormal spend: 10% payers, heavy right tail, a steady spend level."""
    level = rng.normal(2.0, 0.8, size=shape)
    x = (rng.random(shape) < 0.1) * np.exp(level + rng.normal(0, 0.5, size=shape))
    y = (rng.random(shape) < 0.1) * np.exp(level + rng.normal(0, 0.5, size=shape))
    return y * (1 + lift), x


def correlated(rng: np.random.Generator, shape: tuple[int, ...], rho: float, lift: float = 0.0):
    """Standard normal x and y = 10 + lift + unit-variance noise with corr(x, y) = rho."""
    x = rng.standard_normal(shape)
    y = 10.0 + lift + rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(shape)
    return y, x


# --- 1. A/A: nothing planted, so intervals cover 0 and p-values are uniform


@pytest.mark.parametrize("metric", [conversions, revenue], ids=["conversion", "revenue"])
def test_aa_intervals_cover_zero_and_p_values_are_uniform(metric):
    rng = np.random.default_rng(20240501)
    reps, n = 2000, 2000
    y_a, x_a = metric(rng, (reps, n))
    y_b, x_b = metric(rng, (reps, n))
    hits = {"lift": 0, "rel": 0, "cuped_lift": 0, "cuped_rel": 0}
    p_raw, p_cuped = [], []
    for i in range(reps):
        a, b = Moments.of(y_a[i], x_a[i]), Moments.of(y_b[i], x_b[i])
        raw, cup = compare(a, b), compare(a, b, cuped=True)
        hits["lift"] += covers(raw.lift_low, raw.lift_high, 0.0)
        hits["rel"] += covers(raw.rel_low, raw.rel_high, 0.0)
        hits["cuped_lift"] += covers(cup.lift_low, cup.lift_high, 0.0)
        hits["cuped_rel"] += covers(cup.rel_low, cup.rel_high, 0.0)
        p_raw.append(raw.p_value)
        p_cuped.append(cup.p_value)

    for name, count in hits.items():
        assert count / reps == pytest.approx(0.95, abs=tolerance(0.95, reps)), name
    for p in (np.array(p_raw), np.array(p_cuped)):
        for q in (0.05, 0.25, 0.5):
            assert np.mean(p < q) == pytest.approx(q, abs=tolerance(q, reps))


# --- 2 and 3. Sample ratio mismatch


def test_srm_false_alarms_at_the_nominal_rate():
    rng = np.random.default_rng(7)
    shares = {"control": 0.45, "treatment": 0.45, "holdout": 0.10}
    reps = 5000
    draws = rng.multinomial(10_000, list(shares.values()), size=reps)
    p = np.array([srm_p_value(dict(zip(shares, row, strict=True)), shares) for row in draws])
    assert np.mean(p < 0.001) <= 0.004
    assert np.mean(p < 0.05) == pytest.approx(0.05, abs=tolerance(0.05, reps))


@pytest.mark.parametrize("broken", ["control loses 2%", "treatment gains 2%"])
def test_srm_flags_a_two_percent_imbalance(broken):
    # At 100,000 users a 2% loss of control gives chi2 ~ 10 (p ~ 0.007), not < 0.001; the
    # check needs a few hundred thousand users to see an imbalance that small reliably.
    rng = np.random.default_rng(11)
    shares = {"control": 0.45, "treatment": 0.45, "holdout": 0.10}
    counts = dict(zip(shares, rng.multinomial(500_000, list(shares.values())), strict=True))
    assert srm_p_value(counts, shares) > 0.001

    if broken == "control loses 2%":
        counts["control"] = rng.binomial(counts["control"], 0.98)
    else:
        counts["treatment"] += rng.binomial(counts["treatment"], 0.02)
    assert srm_p_value(counts, shares) < 0.001


def test_srm_edge_cases():
    shares = {"control": 0.5, "treatment": 0.5, "off": 0.0}
    assert srm_p_value({"control": 500, "treatment": 500}, shares) == pytest.approx(1.0)
    # An arm with share 0 is left out of the test while it stays empty.
    assert srm_p_value({"control": 480, "treatment": 520, "off": 0}, shares) == pytest.approx(
        stats.chisquare([480, 520]).pvalue
    )
    # Users where none should be: assignment is broken.
    assert srm_p_value({"control": 500, "treatment": 500, "off": 1}, shares) == 0.0
    assert srm_p_value({"control": 500, "treatment": 500, "stray": 3}, shares) == 0.0
    # A configured arm with no users at all is the worst mismatch, not a skipped arm.
    assert srm_p_value({"control": 1000}, shares) < 1e-100
    assert math.isnan(srm_p_value({}, shares))
    assert math.isnan(srm_p_value({"control": 0, "treatment": 0}, shares))
    # Shares need not sum to 1.
    assert srm_p_value({"a": 300, "b": 100}, {"a": 3, "b": 1}) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="non-negative"):
        srm_p_value({"a": 1}, {"a": -0.5, "b": 1.5})


# --- 4. CUPED


def test_cuped_matches_the_adjustment_done_on_user_level_data():
    rng = np.random.default_rng(2)
    y_a, x_a = revenue(rng, (3000,), lift=0.05)
    y_b, x_b = revenue(rng, (3500,))
    x, y = np.r_[x_a, x_b], np.r_[y_a, y_b]
    theta = np.cov(x, y)[0, 1] / x.var(ddof=1)  # fitted on both arms as one sample
    adj_a, adj_b = y_a - theta * (x_a - x.mean()), y_b - theta * (x_b - x.mean())
    se = math.sqrt(adj_a.var(ddof=1) / adj_a.size + adj_b.var(ddof=1) / adj_b.size)
    raw_se = math.sqrt(y_a.var(ddof=1) / y_a.size + y_b.var(ddof=1) / y_b.size)

    c = compare(Moments.of(y_a, x_a), Moments.of(y_b, x_b), cuped=True)
    assert c.theta == pytest.approx(theta, rel=1e-9)
    assert (c.mean_a, c.mean_b) == pytest.approx((adj_a.mean(), adj_b.mean()), rel=1e-9)
    assert c.lift == pytest.approx(adj_a.mean() - adj_b.mean(), rel=1e-9)
    assert c.se == pytest.approx(se, rel=1e-9)
    assert c.rel_lift == pytest.approx(adj_a.mean() / adj_b.mean() - 1, rel=1e-9)
    assert c.variance_reduction == pytest.approx(1 - se**2 / raw_se**2, rel=1e-9)
    assert c.p_value == pytest.approx(2 * stats.norm.sf(abs(c.lift) / se), rel=1e-9)


def test_cuped_variance_reduction_is_about_rho_squared():
    rng = np.random.default_rng(3)
    rho, n = 0.7, 50_000
    a, b = (Moments.of(*correlated(rng, (n,), rho)) for _ in range(2))
    c = compare(a, b, cuped=True)
    assert c.variance_reduction == pytest.approx(rho**2, abs=0.02)
    assert c.variance_reduction > 0.3
    assert c.theta == pytest.approx(rho, abs=0.02)  # cov(x, y) / var(x) with var(x) = 1


def test_cuped_is_unbiased_covers_the_truth_and_shrinks_the_real_spread():
    rng = np.random.default_rng(5)
    rho, effect, reps, n = 0.7, 0.05, 2000, 1000
    y_a, x_a = correlated(rng, (reps, n), rho, lift=effect)
    y_b, x_b = correlated(rng, (reps, n), rho)
    raw_lifts, cuped = [], []
    for i in range(reps):
        a, b = Moments.of(y_a[i], x_a[i]), Moments.of(y_b[i], x_b[i])
        raw_lifts.append(compare(a, b).lift)
        cuped.append(compare(a, b, cuped=True))
    lifts = np.array([c.lift for c in cuped])
    ses = np.array([c.se for c in cuped])
    coverage = np.mean([covers(c.lift_low, c.lift_high, effect) for c in cuped])

    assert lifts.mean() == pytest.approx(effect, abs=3 * lifts.std() / math.sqrt(reps))
    assert coverage == pytest.approx(0.95, abs=tolerance(0.95, reps))
    # The reported se matches the spread of the estimates across replicates ...
    assert np.mean(ses**2) == pytest.approx(lifts.var(), rel=0.1)
    # ... and that spread really is (1 - rho^2) of the raw one, not just a smaller number.
    assert lifts.var() / np.var(raw_lifts) == pytest.approx(1 - rho**2, abs=0.05)


def test_cuped_with_an_unpredictive_covariate_changes_nothing_much():
    rng = np.random.default_rng(9)
    n = 50_000
    a = Moments.of(rng.normal(10, 1, n), rng.normal(0, 1, n))
    b = Moments.of(rng.normal(10, 1, n), rng.normal(0, 1, n))
    c = compare(a, b, cuped=True)
    assert -0.01 <= c.variance_reduction < 0.01


@pytest.mark.parametrize("with_x", [True, False], ids=["constant x", "no x"])
def test_cuped_without_covariate_variation_equals_raw(with_x):
    rng = np.random.default_rng(13)
    y_a, y_b = rng.exponential(3.0, 800), rng.exponential(3.2, 900)
    a = Moments.of(y_a, np.full(800, 4.0) if with_x else None)
    b = Moments.of(y_b, np.full(900, 4.0) if with_x else None)
    raw, cup = compare(a, b), compare(a, b, cuped=True)
    assert cup.theta == 0.0
    assert cup.variance_reduction == 0.0
    for field in ("mean_a", "mean_b", "lift", "lift_low", "lift_high", "se", "p_value"):
        assert getattr(cup, field) == pytest.approx(getattr(raw, field), rel=1e-12), field
    for field in ("rel_lift", "rel_low", "rel_high"):
        assert getattr(cup, field) == pytest.approx(getattr(raw, field), rel=1e-12), field
    assert raw.theta is None and raw.variance_reduction is None


# --- 5. A planted lift is recovered


def test_a_planted_lift_is_recovered_within_its_interval():
    rng = np.random.default_rng(17)
    n = 200_000
    a = Moments.of(rng.random(n) < 0.055)
    b = Moments.of(rng.random(n) < 0.05)
    c = compare(a, b)
    assert covers(c.lift_low, c.lift_high, 0.005)
    assert c.lift_low > 0
    assert covers(c.rel_low, c.rel_high, 0.10)
    assert c.p_value < 1e-6
    assert c.lift == pytest.approx(c.mean_a - c.mean_b)


def test_planted_lift_coverage_and_power_at_the_required_sample_size():
    """At the computed sample size the test finds the minimum effect 80% of the time."""
    p_b, p_a = 0.05, 0.055
    n = required_users_per_arm(p_b, p_a * (1 - p_a), p_b * (1 - p_b), mde=0.10)
    rng = np.random.default_rng(19)
    reps = 1000
    # A 0/1 metric's moments are its count (sum_y = sum_y2 = conversions), so drawing the count
    # is drawing the users, without 60 million random numbers.
    detected = lift_hits = rel_hits = 0
    for k_a, k_b in zip(rng.binomial(n, p_a, reps), rng.binomial(n, p_b, reps), strict=True):
        c = compare(Moments(n, float(k_a), float(k_a)), Moments(n, float(k_b), float(k_b)))
        detected += success_verdict(c, c.p_value) == "better"
        lift_hits += covers(c.lift_low, c.lift_high, p_a - p_b)
        rel_hits += covers(c.rel_low, c.rel_high, p_a / p_b - 1)
    assert detected / reps == pytest.approx(0.8, abs=tolerance(0.8, reps))
    assert lift_hits / reps == pytest.approx(0.95, abs=tolerance(0.95, reps))
    assert rel_hits / reps == pytest.approx(0.95, abs=tolerance(0.95, reps))


# --- 6. Against references


def test_raw_comparison_matches_welch_t_test():
    rng = np.random.default_rng(23)
    y_a, y_b = rng.lognormal(1.0, 1.0, 5000), rng.lognormal(1.0, 1.0, 6000)
    # Shift treatment to a difference of 1.5 standard errors (p ~ 0.13): with ~10,000 degrees
    # of freedom the t and normal tails part by 0.03% there, but by 0.15% at p = 0.01.
    se = math.sqrt(y_a.var(ddof=1) / y_a.size + y_b.var(ddof=1) / y_b.size)
    y_a += y_b.mean() - y_a.mean() + 1.5 * se
    c = compare(Moments.of(y_a), Moments.of(y_b))
    welch = stats.ttest_ind(y_a, y_b, equal_var=False)
    assert 0.1 < welch.pvalue < 0.2
    assert c.lift == pytest.approx(y_a.mean() - y_b.mean(), rel=1e-12)
    assert c.lift / c.se == pytest.approx(welch.statistic, rel=1e-9)
    assert c.p_value == pytest.approx(welch.pvalue, rel=1e-3)
    ci = welch.confidence_interval(0.95)
    assert (c.lift_low, c.lift_high) == pytest.approx((ci.low, ci.high), rel=1e-3)


def test_moments_match_numpy_and_pool_by_adding():
    rng = np.random.default_rng(29)
    y1, x1 = rng.normal(5, 2, 300), rng.normal(1, 3, 300)
    y2, x2 = rng.normal(6, 1, 500), rng.normal(0, 1, 500)
    m = Moments.of(y1, x1)
    assert m.n == 300
    assert m.mean_y == pytest.approx(y1.mean())
    assert m.mean_x == pytest.approx(x1.mean())
    assert m.var_y == pytest.approx(y1.var(ddof=1))
    assert m.var_x == pytest.approx(x1.var(ddof=1))
    assert m.cov_xy == pytest.approx(np.cov(x1, y1)[0, 1])

    pooled, whole = m + Moments.of(y2, x2), Moments.of(np.r_[y1, y2], np.r_[x1, x2])
    assert pooled.n == whole.n == 800
    for field in ("sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"):
        assert getattr(pooled, field) == pytest.approx(getattr(whole, field), rel=1e-12)
    with pytest.raises(ValueError, match="shape"):
        Moments.of(y1, x2)


def test_relative_lift_interval_is_the_delta_method():
    a, b = summary(4000, 1.1, 4.0), summary(5000, 1.0, 3.0)
    c = compare(a, b, level=0.9)
    se = math.sqrt(4.0 / (4000 * 1.0**2) + 1.1**2 * 3.0 / (5000 * 1.0**4))
    z = stats.norm.ppf(0.95)
    assert c.rel_lift == pytest.approx(0.1)
    assert (c.rel_low, c.rel_high) == pytest.approx((0.1 - z * se, 0.1 + z * se))


def test_mean_interval_covers_the_true_mean():
    rng = np.random.default_rng(31)
    reps = 2000
    spend = rng.exponential(4.0, size=(reps, 1500))
    hits = sum(covers(*mean_interval(Moments.of(row)), 4.0) for row in spend)
    assert hits / reps == pytest.approx(0.95, abs=tolerance(0.95, reps))
    half = stats.norm.ppf(0.95) * math.sqrt(9.0 / 400)
    assert mean_interval(summary(400, 2.0, 9.0), level=0.9) == pytest.approx((2 - half, 2 + half))
    for m in (Moments(0, 0.0, 0.0), Moments(1, 2.0, 4.0), Moments.of(np.full(10, 3.0))):
        assert all(math.isnan(v) for v in mean_interval(m))


# --- 7. Multiplicity and sample size


def test_benjamini_hochberg_by_hand():
    # Sorted 0.005, 0.01, 0.03, 0.04 of m = 4: p * m / rank = 0.02, 0.02, 0.04, 0.04.
    assert adjust_p_values([0.01, math.nan, 0.04, 0.03, 0.005]) == pytest.approx(
        [0.02, math.nan, 0.04, 0.04, 0.02], nan_ok=True
    )
    # The step-up: 0.02 * 3 / 1 = 0.06 drops to the 0.021 * 3 / 2 = 0.0315 above it.
    assert adjust_p_values([0.02, 0.021, 0.9]) == pytest.approx([0.0315, 0.0315, 0.9])
    assert adjust_p_values([]) == []
    assert all(math.isnan(p) for p in adjust_p_values([math.nan, math.nan]))


def test_required_users_per_arm_is_the_textbook_formula():
    p_b, p_a = 0.05, 0.055
    var_a, var_b = p_a * (1 - p_a), p_b * (1 - p_b)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    expected = z**2 * (var_a + var_b) / (0.10 * p_b) ** 2
    n = required_users_per_arm(p_b, var_a, var_b, mde=0.10)
    assert n == math.ceil(expected)
    assert 31_000 < n < 31_500
    # Half the effect needs four times the users.
    assert required_users_per_arm(p_b, var_a, var_b, mde=0.05) == pytest.approx(4 * n, rel=1e-3)


@pytest.mark.parametrize(
    ("baseline", "mde", "match"),
    [(0.0, 0.1, "baseline_mean"), (math.nan, 0.1, "baseline_mean"), (0.05, 0.0, "mde")],
)
def test_required_users_per_arm_rejects_what_it_cannot_size(baseline, mde, match):
    with pytest.raises(ValueError, match=match):
        required_users_per_arm(baseline, 0.05, 0.05, mde=mde)


# --- 9. Degenerate arms give nan, never an exception


@pytest.mark.parametrize("cuped", [False, True])
@pytest.mark.parametrize(
    ("a", "b", "se"),
    [
        (Moments.of(np.array([1.0])), Moments.of(np.array([0.0, 1.0, 1.0])), math.nan),
        (Moments(0, 0.0, 0.0), Moments(0, 0.0, 0.0), math.nan),
        (Moments(0, 0.0, 0.0), Moments.of(np.array([2.0, 3.0])), math.nan),
        (Moments.of(np.zeros(100)), Moments.of(np.zeros(120)), 0.0),
        (Moments.of(np.ones(50), np.ones(50)), Moments.of(np.ones(60), np.ones(60)), 0.0),
    ],
    ids=["n=1", "empty", "one empty", "all zero", "constant"],
)
def test_degenerate_arms_give_nan(a, b, se, cuped):
    c = compare(a, b, cuped=cuped)
    for field in ("lift_low", "lift_high", "p_value", "rel_low", "rel_high"):
        assert math.isnan(getattr(c, field)), field
    assert c.se == pytest.approx(se, nan_ok=True)  # no spread is an se of 0, not unknown
    if cuped:
        assert math.isnan(c.variance_reduction)
    assert success_verdict(c, c.p_value) == "inconclusive"
    assert guardrail_verdict(c, 0.01) == "inconclusive"


def test_degenerate_point_estimates():
    c = compare(Moments.of(np.zeros(100)), Moments.of(np.zeros(120)))
    assert c.lift == 0.0
    assert math.isnan(c.rel_lift)  # control mean 0: no relative lift
    c = compare(Moments.of(np.array([3.0])), Moments.of(np.array([2.0])))
    assert c.lift == 1.0 and c.rel_lift == pytest.approx(0.5)
    assert math.isnan(compare(Moments(0, 0.0, 0.0), Moments(0, 0.0, 0.0)).lift)
    assert Moments(1, 2.0, 4.0).var_y == 0.0
    with pytest.raises(ValueError, match="level"):
        compare(Moments(1, 2.0, 4.0), Moments(1, 2.0, 4.0), level=95)
