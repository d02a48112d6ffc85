"""Predicted against observed: deciles, markets, log loss and Brier against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.evaluation.reliability import reliability


def test_reliability_matches_numpy(spark):
    rng = np.random.default_rng(11)
    p = rng.uniform(0.01, 0.5, 2_000)
    y = (rng.random(2_000) < p).astype(float)
    markets = np.where(np.arange(2_000) % 3 == 0, "SE", "DE")
    found = reliability(
        spark.createDataFrame(
            [(str(m), float(a), float(b)) for m, a, b in zip(markets, p, y, strict=True)],
            "market string, p double, y double",
        )
    )
    assert found.impressions == 2_000
    assert found.log_loss == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert found.brier == pytest.approx(np.mean((p - y) ** 2))
    assert list(found.by_decile["decile"]) == list(range(1, 11))
    assert found.by_decile["impressions"].sum() == 2_000
    assert found.by_decile["impressions"].between(180, 220).all()
    assert found.by_decile["predicted"].is_monotonic_increasing
    # A calibrated model: observed follows predicted within sampling error in every decile.
    gap = (found.by_decile["observed"] - found.by_decile["predicted"]).abs()
    assert (gap < 0.1).all()
    se = found.by_market.set_index("market").loc["SE"]
    assert se["impressions"] == (markets == "SE").sum()
    assert se["predicted"] == pytest.approx(p[markets == "SE"].mean())
    assert se["observed"] == pytest.approx(y[markets == "SE"].mean())
