"""Search trials: the defaults first, then distinct grid points, the same ones on a rerun."""

from __future__ import annotations

import pytest

from recsys.config import ALSSpec, load_config
from recsys.errors import ConfigError
from recsys.training.search import trials


def test_defaults_first_then_distinct_grid_points():
    spec = ALSSpec(
        params={"factors": 8, "alpha": 10},
        search={"factors": [8, 16], "alpha": [1, 10, 40]},
    )
    drawn = trials(spec, max_trials=4, seed=1)
    assert drawn[0] == spec.params.model_dump()
    assert len(drawn) == 4
    assert len({tuple(sorted(t.items())) for t in drawn}) == 4
    grid = {(f, a) for f in (8, 16) for a in (1.0, 10.0, 40.0)}
    assert {(t["factors"], t["alpha"]) for t in drawn} <= grid
    assert trials(spec, max_trials=4, seed=1) == drawn


def test_a_small_grid_is_tried_whole():
    spec = ALSSpec(search={"factors": [8, 16]})
    assert [t["factors"] for t in trials(spec, max_trials=10, seed=1)] == [16, 8]


def test_search_and_pins_are_validated(conf_path):
    with pytest.raises(ConfigError, match=r"search.factorz: unknown parameter"):
        load_config(conf_path, ["train.models.spark_als.search.factorz=[1]"])
    with pytest.raises(ConfigError, match=r"markets.SE: factors: Input should be greater"):
        load_config(conf_path, ["train.models.implicit_bpr.markets.SE.factors=0"])
    with pytest.raises(ConfigError, match=r"train.models.spark_als.markets.XX: unknown market"):
        load_config(conf_path, ["train.models.spark_als.markets.XX.factors=8"])
    with pytest.raises(ConfigError, match=r"gate.k=4 must be one of ks"):
        load_config(conf_path, ["train.gate.k=4"])
    with pytest.raises(ConfigError, match=r"ladder.signals.signal:pets: unknown behaviour token"):
        load_config(conf_path, ["train.models.ladder.signals={'signal:pets': [premium_duo]}"])
