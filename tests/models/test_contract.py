"""One contract every model passes (implicit's RecommenderBaseTestMixin, in Spark): it fits,
scores exactly the candidates it is given, fits the same way twice with a seed, and scores
the same after a save/load round trip."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys.models import FAMILIES, load_model
from recsys.training.search import baseline_params

OFFERS = ("premium_individual", "premium_family", "premium_duo", "trial_individual_1m")
TOKENS = ("signal:household", "genre:pop", "signal:student")


def _params(config, family):
    spec = getattr(config.train.models, family)
    if hasattr(spec, "params"):
        # Small and quick; the prior on, so it is part of what is saved and scored.
        return spec.with_params({"factors": 4, "iterations": 15, "prior_weight": 0.5}).model_dump()
    return baseline_params(config, family)


@pytest.fixture(scope="module")
def interactions_df(spark):
    """Two markets, 24 users each; users with a household signal lean to family plans."""
    rows = []
    items = {item: i for i, item in enumerate(OFFERS + TOKENS)}
    for market in ("SE", "DE"):
        for u in range(24):
            household = u % 3 == 0
            picks = {"genre:pop": 1.5, "premium_individual": 1.0 + (u % 2)}
            if household:
                picks |= {"signal:household": 2.0, "premium_family": 3.0}
            elif u % 4 == 1:
                picks |= {"premium_duo": 1.0, "trial_individual_1m": 2.0}
            for item, confidence in picks.items():
                rows.append(
                    (market, u, items[item], f"{market}-u{u}", item, item in OFFERS, confidence)
                )
    interactions_df = spark.createDataFrame(
        rows,
        "market string, user_idx long, item_idx long, user_id string, item_id string, "
        "is_offer boolean, confidence double",
    ).persist()
    yield interactions_df
    interactions_df.unpersist()


@pytest.fixture(scope="module")
def candidates_df(spark):
    """Every offer for a few known users, and one user nobody has seen."""
    rows = [
        (market, f"{market}-u{u}", offer, "free")
        for market in ("SE", "DE")
        for u in (0, 1, 2, 5)
        for offer in OFFERS
    ]
    rows += [("SE", "SE-newcomer", offer, "premium_individual") for offer in OFFERS]
    return spark.createDataFrame(
        rows, "market string, user_id string, offer_id string, current_plan string"
    )


FAMILY_NAMES = sorted(FAMILIES)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_scores_exactly_the_candidates(family, config, interactions_df, candidates_df):
    model = FAMILIES[family](_params(config, family), seed=3).fit(interactions_df)
    scores_df = model.score(candidates_df)
    assert scores_df.columns == ["market", "user_id", "offer_id", "score"]
    keys = ["market", "user_id", "offer_id"]
    assert_df_equality(
        scores_df.select(*keys),
        candidates_df.select(*keys),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    known = scores_df.where(F.col("user_id") != "SE-newcomer")
    assert known.where(F.col("score").isNull()).count() == 0


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_fitting_twice_with_a_seed_gives_the_same_scores(
    family, config, spark, interactions_df, candidates_df
):
    params = _params(config, family)
    schema = "market string, user_id string, offer_id string, score double"
    fits = []
    for _ in range(2):
        model = FAMILIES[family](params, seed=3).fit(interactions_df)
        fits.append(spark.createDataFrame(model.score(candidates_df).collect(), schema))
        model.unpersist()
        # An identical plan would otherwise be answered from the first fit's cache.
        spark.catalog.clearCache()
    assert_df_equality(fits[0], fits[1], ignore_row_order=True)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_save_and_load_give_identical_scores(
    family, config, spark, interactions_df, candidates_df, tmp_path
):
    model = FAMILIES[family](_params(config, family), seed=3).fit(interactions_df)
    model.save(tmp_path.as_uri())
    loaded = load_model(spark, tmp_path.as_uri())
    assert type(loaded) is type(model)
    assert loaded.params == model.params
    assert_df_equality(
        loaded.score(candidates_df), model.score(candidates_df), ignore_row_order=True
    )


def test_a_missing_column_is_named(config, interactions_df):
    from recsys.errors import RecsysError

    with pytest.raises(RecsysError, match=r"popularity.fit input lacks columns \['confidence'\]"):
        FAMILIES["popularity"]({}, seed=1).fit(interactions_df.drop("confidence"))


def test_loading_from_an_empty_folder_says_so(spark, tmp_path):
    from recsys.errors import RecsysError

    with pytest.raises(RecsysError, match="no saved model at"):
        load_model(spark, tmp_path.as_uri())
