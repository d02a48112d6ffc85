"""Eligibility with reasons, and the subscription state derived from events."""

from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys import eligibility as E
from recsys import schemas as S
from recsys.catalog import catalog_df
from recsys.config import EligibilityRules
from recsys.markets import load_markets
from recsys.world.generate import generate_world
from tests.test_markets import SMALL

STATE = (
    "market string, user_id string, current_plan string, active_addons array<string>, "
    "is_student_verified boolean, has_used_trial boolean"
)
OUT = "market string, user_id string, offer_id string, eligible boolean, reason_code string"


def _october(day: int) -> dt.datetime:
    return dt.datetime(2026, 10, day)


def _se_events_df(spark, events):
    """``events``: (user, event_type, item_id, timestamp) in SE, each with value 1."""
    return spark.createDataFrame(
        [(u, "SE", t, i, ts, 1.0) for u, t, i, ts in events], S.EVENTS_SCHEMA
    )


def test_every_offer_of_the_market_gets_a_verdict(spark, config):
    state_df = spark.createDataFrame(
        [
            ("SE", "free_user", "free", [], False, False),
            ("SE", "payer", "premium_individual", ["audiobooks_addon"], True, True),
        ],
        STATE,
    )
    expected = {
        "free_user": {
            "free": E.CURRENT_PLAN,
            "premium_student": E.STUDENT_UNVERIFIED,
            "premium_individual": None,
            "premium_duo": None,
            "premium_family": None,
            "audiobooks_addon": E.ADDON_NEEDS_PLAN,
            "trial_individual_1m": None,
            "discount_individual_3m": None,
            "annual_individual": None,
            "trial_family_1m": None,
        },
        "payer": {
            "free": E.DOWNGRADE,
            "premium_student": E.DOWNGRADE,
            "premium_individual": E.CURRENT_PLAN,
            "premium_duo": None,
            "premium_family": None,
            "audiobooks_addon": E.ADDON_HELD,
            "trial_individual_1m": E.CURRENT_PLAN,
            "discount_individual_3m": E.CURRENT_PLAN,
            "annual_individual": None,  # switching to annual billing is an upsell
            "trial_family_1m": E.TRIAL_USED,
        },
    }
    assert set(expected["payer"]) == set(config.markets.markets["SE"].offers)
    expected_df = spark.createDataFrame(
        [
            ("SE", user, offer, reason is None, reason)
            for user, offers in expected.items()
            for offer, reason in offers.items()
        ],
        OUT,
    )
    got = E.with_eligibility(state_df, catalog_df(spark, config.markets))
    assert_df_equality(got, expected_df, ignore_row_order=True, ignore_nullable=True)


def test_state_at_a_moment_reads_only_events_before_it(spark, config):
    moment = dt.datetime(2026, 10, 11, tzinfo=dt.UTC)
    at = _october
    events = [
        ("a", "renewal", "premium_individual", at(1)),
        ("a", "conversion", "premium_family", at(5)),
        ("a", "conversion", "premium_duo", at(20)),  # after the moment: unseen
        ("a", "student_verified", "signal:student", at(25)),  # after the moment: unseen
        ("b", "renewal", "premium_duo", at(1)),
        ("b", "cancellation", "premium_duo", at(3)),
        ("b", "student_verified", "signal:student", at(2)),
        ("c", "trial_start", "trial_individual_1m", at(2)),
        ("c", "conversion", "audiobooks_addon", at(4)),
        ("d", "listen", "genre:pop", at(4)),
    ]
    events_df = _se_events_df(spark, events)
    expected_df = spark.createDataFrame(
        [
            ("SE", "a", "premium_family", [], False, False),
            ("SE", "b", "free", [], True, False),
            ("SE", "c", "premium_individual", ["audiobooks_addon"], False, True),
            ("SE", "d", "free", [], False, False),
        ],
        STATE,
    )
    got = E.state_at(events_df, catalog_df(spark, config.markets), moment)
    assert_df_equality(got, expected_df, ignore_row_order=True, ignore_nullable=True)


def test_a_trial_older_than_the_events_comes_from_the_users_table(spark, config):
    """The users table (the state at the snapshot) marks a trial used; the events show it
    only when it started inside them, and then only from its start."""
    at = _october
    events = [
        ("earlier", "listen", "genre:pop", at(1)),  # trial before the events: none logged
        ("inside", "listen", "genre:pop", at(1)),
        ("inside", "trial_start", "trial_individual_1m", at(20)),
        ("never", "listen", "genre:pop", at(1)),
    ]
    events_df = _se_events_df(spark, events)
    users_df = spark.createDataFrame(
        [("earlier", True), ("inside", True), ("never", False)],
        "user_id string, has_used_trial boolean",
    )
    moments = {
        "before": dt.datetime(2026, 10, 11, tzinfo=dt.UTC),
        "after": dt.datetime(2026, 10, 25, tzinfo=dt.UTC),
    }
    catalog = catalog_df(spark, config.markets)

    def used(users):
        return {
            (r["user_id"], r["split"]): r["has_used_trial"]
            for r in E.states_at(events_df, catalog, moments, users).collect()
        }

    assert used(users_df) == {
        ("earlier", "before"): True,
        ("earlier", "after"): True,
        ("inside", "before"): False,
        ("inside", "after"): True,
        ("never", "before"): False,
        ("never", "after"): False,
    }
    # Without a users table only the events speak.
    assert not used(None)[("earlier", "after")]


def test_state_at_the_snapshot_matches_the_generated_users(spark, config):
    """The generator's end state and the state read back from its events and users agree."""
    world_cfg = config.world.model_copy(update={"users": 3_000})
    world = generate_world(spark, world_cfg, config.markets)
    world.state_df.persist()  # users and events derive from it: generate the world once
    end = dt.datetime.combine(world_cfg.end_date, dt.time(), tzinfo=dt.UTC)
    derived_df = E.state_at(world.events_df, catalog_df(spark, config.markets), end, world.users_df)
    columns = list(E.STATE_COLUMNS)
    users_df = world.users_df.select(
        *columns[:3], F.array_sort("active_addons").alias("active_addons"), *columns[4:]
    )
    # Users without any event in the window are absent from derived state: treat as free.
    assert_df_equality(
        derived_df.select(*columns),
        users_df.join(derived_df.select("user_id"), "user_id", "inner").select(*columns),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert derived_df.count() == users_df.count()
    world.state_df.unpersist()


def test_config_rules_exclude_small_households_and_withheld_offers(spark, config):
    rules = EligibilityRules(household_min={"premium_family": 3}, exclude={"SE": ["premium_duo"]})
    state_df = spark.createDataFrame(
        [
            ("SE", "single", "free", [], False, False, 1),
            ("SE", "family", "free", [], False, False, 3),
            ("SE", "unknown", "free", [], False, False, None),
            ("US", "abroad", "free", [], False, False, 1),
        ],
        STATE + ", household_size_hint int",
    )
    verdicts_df = E.with_eligibility(state_df, catalog_df(spark, config.markets), rules).where(
        F.col("offer_id").isin("premium_family", "premium_duo")
    )
    expected_df = spark.createDataFrame(
        [
            ("SE", "family", "premium_duo", False, E.MARKET_EXCLUDED),
            ("SE", "family", "premium_family", True, None),
            ("SE", "single", "premium_duo", False, E.MARKET_EXCLUDED),
            ("SE", "single", "premium_family", False, E.HOUSEHOLD_TOO_SMALL),
            ("SE", "unknown", "premium_duo", False, E.MARKET_EXCLUDED),
            ("SE", "unknown", "premium_family", True, None),  # an unknown household keeps it
            ("US", "abroad", "premium_duo", True, None),  # withheld in SE only
            ("US", "abroad", "premium_family", False, E.HOUSEHOLD_TOO_SMALL),
        ],
        OUT,
    )
    assert_df_equality(
        verdicts_df.orderBy("market", "user_id", "offer_id"),
        expected_df,
        ignore_nullable=True,
    )


# tests/test_markets.py's small catalogue, with gold sold in US.
ADDON_MARKETS = SMALL.replace("offers: {free: 0, cover: 5", "offers: {free: 0, gold: 10, cover: 5")


def test_an_addon_for_every_plan_is_held_and_offered_on_the_free_plan(spark, tmp_path):
    """``cover`` sets no requires_plans: a user on the free plan keeps it in the state and is
    offered it; ``gold_extra`` needs gold, so a cancellation back to free ends it."""
    path = tmp_path / "markets.yaml"
    path.write_text(ADDON_MARKETS, encoding="utf-8")
    catalog = catalog_df(spark, load_markets(path))
    day = dt.datetime(2026, 10, 1)
    events = [
        ("free_cover", "conversion", "cover", day),
        ("lapsed", "conversion", "gold", day),
        ("lapsed", "conversion", "gold_extra", day + dt.timedelta(days=1)),
        ("lapsed", "conversion", "cover", day + dt.timedelta(days=1)),
        ("lapsed", "cancellation", "gold", day + dt.timedelta(days=2)),
        ("bare", "conversion", "gold", day),
    ]
    events_df = spark.createDataFrame(
        [(u, "US", t, i, ts, 1.0) for u, t, i, ts in events], S.EVENTS_SCHEMA
    )
    state_df = E.state_at(events_df, catalog, dt.datetime(2026, 10, 11, tzinfo=dt.UTC))
    expected_df = spark.createDataFrame(
        [
            ("US", "free_cover", "free", ["cover"], False, False),
            ("US", "lapsed", "free", ["cover"], False, False),
            ("US", "bare", "gold", [], False, False),
        ],
        STATE,
    )
    assert_df_equality(state_df, expected_df, ignore_row_order=True, ignore_nullable=True)

    verdicts = {
        (r["user_id"], r["offer_id"]): r["reason_code"]
        for r in E.with_eligibility(state_df, catalog).collect()
    }
    assert verdicts[("free_cover", "cover")] == E.ADDON_HELD
    assert verdicts[("free_cover", "gold_extra")] == E.ADDON_NEEDS_PLAN
    assert verdicts[("bare", "cover")] is None
    assert verdicts[("bare", "gold_extra")] is None
