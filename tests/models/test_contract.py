"""One contract every model passes (implicit's RecommenderBaseTestMixin, in Spark): it fits,
scores exactly the candidates it is given, fits the same way twice with a seed, and scores
the same after a save/load round trip. Every family is fitted with the same supervised data
(labelled examples of an earlier window); the families that do not learn from it ignore it."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys.features import offer_features, plan_tiers, user_features, with_pair_features
from recsys.models import FAMILIES, load_model
from recsys.models.baselines import baseline_params
from recsys.supervision import Supervised

OFFERS = ("premium_individual", "premium_family", "premium_duo", "trial_individual_1m")
TOKENS = ("signal:household", "genre:pop", "signal:student")


def _params(config, family):
    spec = getattr(config.train.models, family)
    if family == "conversion":
        return spec.with_params({"n_estimators": 20, "max_depth": 3}).model_dump()
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
def supervised(spark, interactions_df):
    """Labelled examples of the same users: each was shown every offer once; households took
    the family plan, every fourth user the trial, odd users Premium Individual."""
    catalog_df = spark.createDataFrame(
        [
            (market, offer, plan, kind, tier, period, trial, None, price)
            for market in ("SE", "DE")
            for offer, plan, kind, tier, period, trial, price in (
                ("premium_individual", "premium_individual", "plan", 2, 30, None, 10.0),
                ("premium_family", "premium_family", "plan", 4, 30, None, 16.0),
                ("premium_duo", "premium_duo", "plan", 3, 30, None, 13.0),
                ("trial_individual_1m", "premium_individual", "promo", 2, 30, 30, 10.0),
            )
        ],
        "market string, offer_id string, plan_id string, kind string, tier int, "
        "period_days int, trial_days int, discount_months int, price double",
    )
    state_df = spark.createDataFrame(
        [(m, f"{m}-u{u}", "free", [], False, False) for m in ("SE", "DE") for u in range(24)],
        "market string, user_id string, current_plan string, active_addons array<string>, "
        "has_used_trial boolean, is_student_verified boolean",
    )
    profile_df = spark.createDataFrame(
        [(m, f"{m}-u{u}", dt.date(2026, 1, 1), None) for m in ("SE", "DE") for u in range(24)],
        "market string, user_id string, signup_date date, household_size_hint int",
    )
    users_df = user_features(interactions_df, state_df, profile_df, at=dt.date(2026, 10, 1))
    offers_df = offer_features(catalog_df, "premium_individual")
    tiers_df = plan_tiers(catalog_df)

    def took(u: int) -> str | None:
        if u % 3 == 0:
            return "premium_family"
        if u % 4 == 1:
            return "trial_individual_1m"
        return "premium_individual" if u % 2 else None

    pairs_df = spark.createDataFrame(
        [
            (m, f"{m}-u{u}", offer, float(took(u) == offer), 0.25, False, u % 2)
            for m in ("SE", "DE")
            for u in range(24)
            for offer in OFFERS
        ],
        "market string, user_id string, offer_id string, label double, propensity double, "
        "is_organic boolean, fold int",
    )
    acceptances_df = spark.createDataFrame(
        [("SE", "premium_family", 8), ("SE", "premium_individual", 5), ("DE", "premium_duo", 1)],
        "market string, offer_id string, acceptances long",
    )
    examples_df = with_pair_features(pairs_df, users_df, offers_df, tiers_df)
    return Supervised(
        examples_df, users_df, offers_df, tiers_df, acceptances_df, "impressions", False
    )


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


@pytest.fixture(scope="module")
def fitted(config, interactions_df, supervised):
    """Family -> a model fitted once with seed 3, for the tests that only read it."""
    models = {}

    def fit(family: str):
        if family not in models:
            models[family] = FAMILIES[family](_params(config, family), seed=3).fit(
                interactions_df, supervised
            )
        return models[family]

    yield fit
    for model in models.values():
        model.unpersist()


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_scores_exactly_the_candidates(family, fitted, candidates_df):
    scores_df = fitted(family).score(candidates_df)
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
    family, config, spark, interactions_df, supervised, candidates_df, fitted
):
    schema = "market string, user_id string, offer_id string, score double"
    first_df = spark.createDataFrame(fitted(family).score(candidates_df).collect(), schema)
    # The second fit's identical plan would otherwise be answered from the first fit's cache.
    spark.catalog.clearCache()
    again = FAMILIES[family](_params(config, family), seed=3).fit(interactions_df, supervised)
    second_df = spark.createDataFrame(again.score(candidates_df).collect(), schema)
    again.unpersist()
    assert_df_equality(first_df, second_df, ignore_row_order=True)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_save_and_load_give_identical_scores(family, spark, fitted, candidates_df, tmp_path):
    model = fitted(family)
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
