"""Table names, column names, schemas and event vocabulary, declared once.

Every reader passes ``schema=`` from here, and every writer ends with a ``select`` of these
columns, so a table's contract is this file.
"""

from __future__ import annotations

from pyspark.sql import types as T

# The plan every user falls back to; no price, no offer to upsell from below.
FREE_PLAN = "free"

# Tables (docs/tables.md).
USERS = "users"
EVENTS = "events"
CATALOG = "catalog"
WORLD_TRUTH = "world_truth"
EVENTS_QUARANTINE = "events_quarantine"
INTERACTIONS = "interactions"
INTERACTION_STATS = "interaction_stats"
# Subscription state of every user at each split point (eligibility for evaluation).
USER_STATE = "user_state"
# Offer impressions (with their logged propensity and attributed acceptance) and acceptances.
OFFER_LOG = "offer_log"
PLAN_RECOMMENDATIONS = "plan_recommendations"
PLAN_RECOMMENDATIONS_CURRENT = "plan_recommendations_current"
ELIGIBILITY_AUDIT = "eligibility_audit"
EXPLORATION_CANDIDATES = "exploration_candidates"
EXPERIMENT_EXPOSURES = "experiment_exposures"
EXPERIMENT_OUTCOMES = "experiment_outcomes"
EXPERIMENT_RESULTS = "experiment_results"
EXPERIMENT_POLICY_VALUES = "experiment_policy_values"

# Event types. Behaviour events carry a behaviour token as item_id; subscription events an
# offer_id of the user's market. `value` is minutes for `listen`, the logging propensity of the
# legacy policy for `offer_impression`, the price paid for money events, else a count.
LISTEN = "listen"
SKIP_LIMIT_HIT = "skip_limit_hit"
OFFLINE_DOWNLOAD_ATTEMPT = "offline_download_attempt"
AUDIOBOOK_PREVIEW = "audiobook_preview"
HOUSEHOLD_COLISTEN = "household_colisten"
STUDENT_VERIFIED = "student_verified"
PLAN_PAGE_VIEW = "plan_page_view"
OFFER_IMPRESSION = "offer_impression"
TRIAL_START = "trial_start"
CONVERSION = "conversion"
RENEWAL = "renewal"
CANCELLATION = "cancellation"

BEHAVIOUR_EVENTS = (
    LISTEN,
    SKIP_LIMIT_HIT,
    OFFLINE_DOWNLOAD_ATTEMPT,
    AUDIOBOOK_PREVIEW,
    HOUSEHOLD_COLISTEN,
    STUDENT_VERIFIED,
)
OFFER_EVENTS = (PLAN_PAGE_VIEW, OFFER_IMPRESSION, TRIAL_START, CONVERSION, RENEWAL, CANCELLATION)
EVENT_TYPES = BEHAVIOUR_EVENTS + OFFER_EVENTS

GENRES = ("pop", "hiphop", "rock", "latin", "classical", "kids", "podcasts")
# Behaviour tokens: the non-offer items of the interaction matrix (docs/interactions.md).
BEHAVIOUR_TOKENS = (
    *(f"genre:{g}" for g in GENRES),
    "signal:skip_limit",
    "signal:offline",
    "signal:audiobook",
    "signal:household",
    "signal:student",
)

USERS_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("market", T.StringType(), False),
        T.StructField("current_plan", T.StringType(), False),
        T.StructField("active_addons", T.ArrayType(T.StringType()), False),
        T.StructField("signup_date", T.DateType(), False),
        T.StructField("is_student_verified", T.BooleanType(), False),
        T.StructField("household_size_hint", T.IntegerType(), True),
        T.StructField("has_used_trial", T.BooleanType(), False),
    ]
)

EVENTS_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), True),
        T.StructField("market", T.StringType(), True),
        T.StructField("event_type", T.StringType(), True),
        T.StructField("item_id", T.StringType(), True),
        T.StructField("event_ts", T.TimestampType(), True),
        T.StructField("value", T.DoubleType(), True),
    ]
)

CATALOG_SCHEMA = T.StructType(
    [
        T.StructField("market", T.StringType(), False),
        T.StructField("offer_id", T.StringType(), False),
        T.StructField("plan_id", T.StringType(), False),
        T.StructField("kind", T.StringType(), False),
        T.StructField("tier", T.IntegerType(), False),
        T.StructField("period_days", T.IntegerType(), False),
        T.StructField("trial_days", T.IntegerType(), True),
        T.StructField("discount_months", T.IntegerType(), True),
        T.StructField("requires_verification", T.BooleanType(), False),
        T.StructField("requires_plans", T.ArrayType(T.StringType(), False), False),
        # Null in a market without prices (own data may have none).
        T.StructField("price", T.DecimalType(18, 4), True),
        T.StructField("currency", T.StringType(), False),
        T.StructField("locale", T.StringType(), False),
        T.StructField("language", T.StringType(), False),
        T.StructField("display_name", T.StringType(), False),
    ]
)

# Every offer impression and acceptance (trial start or conversion) before the snapshot, per
# snapshot_date: what the conversion model learns from and off-policy evaluation replays.
# `event_type` is `offer_impression` or `acceptance`; `propensity` is the logging policy's
# probability of the impression (null for acceptances); `accepted_ts` the first acceptance of
# the same offer by the user within `interactions.attribution_days` of the impression (an
# acceptance's own time on acceptance rows).
ACCEPTANCE = "acceptance"  # the offer_log's event type of a trial start or a conversion
OFFER_LOG_SCHEMA = T.StructType(
    [
        T.StructField("market", T.StringType(), False),
        T.StructField("user_id", T.StringType(), False),
        T.StructField("offer_id", T.StringType(), False),
        T.StructField("event_type", T.StringType(), False),
        T.StructField("event_ts", T.TimestampType(), False),
        T.StructField("propensity", T.DoubleType(), True),
        T.StructField("accepted_ts", T.TimestampType(), True),
        T.StructField("snapshot_date", T.DateType(), False),
    ]
)

# Hidden traits and true response of every synthetic user: read only by the simulator and
# tests, never by training or serving.
WORLD_TRUTH_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("market", T.StringType(), False),
        T.StructField("household_size", T.IntegerType(), False),
        T.StructField("is_student", T.BooleanType(), False),
        T.StructField("listening_hours", T.DoubleType(), False),
        T.StructField("offline_need", T.DoubleType(), False),
        T.StructField("audiobook_affinity", T.DoubleType(), False),
        T.StructField("ad_tolerance", T.DoubleType(), False),
        T.StructField("price_sensitivity", T.DoubleType(), False),
        T.StructField("initial_plan", T.StringType(), False),
        T.StructField("converted_offer", T.StringType(), True),
        T.StructField("p_accept", T.MapType(T.StringType(), T.DoubleType()), False),
    ]
)

# What marketing surfaces read (docs/tables.md), partitioned by snapshot_date and market.
# A user is served either ranks 1..k of offers, or one row of rank 0 with no offer: the holdout
# arm, or a user with nothing eligible (reason_code says which). The offer columns are null
# exactly on those rows, the price columns also on an offer without a price (a market of own
# data without prices); every other column is never null. Reason codes: recsys.vocabulary.
NO_OFFER_RANK = 0
OFFER_COLUMNS = (
    "offer_id",
    "plan_id",
    "display_name",
    "price_amount",
    "price_display",
    "score",
    "p_convert",
    "expected_value",
)
PRICE_COLUMNS = ("price_amount", "price_display")
PLAN_RECOMMENDATIONS_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("market", T.StringType(), False),
        T.StructField("rank", T.IntegerType(), False),
        T.StructField("offer_id", T.StringType(), True),
        T.StructField("plan_id", T.StringType(), True),
        T.StructField("display_name", T.StringType(), True),
        T.StructField("locale", T.StringType(), False),
        T.StructField("price_amount", T.DecimalType(18, 4), True),
        T.StructField("currency", T.StringType(), False),
        T.StructField("price_display", T.StringType(), True),
        T.StructField("score", T.DoubleType(), True),
        T.StructField("p_convert", T.DoubleType(), True),
        T.StructField("expected_value", T.DoubleType(), True),
        T.StructField("reason_code", T.StringType(), False),
        T.StructField("experiment_id", T.StringType(), False),
        T.StructField("arm", T.StringType(), False),
        T.StructField("propensity", T.DoubleType(), False),
        T.StructField("model_name", T.StringType(), False),
        T.StructField("model_version", T.StringType(), False),
        T.StructField("mlflow_run_id", T.StringType(), False),
        T.StructField("generated_at", T.TimestampType(), False),
        T.StructField("snapshot_date", T.DateType(), False),
    ]
)
PLAN_RECOMMENDATION_COLUMNS = tuple(PLAN_RECOMMENDATIONS_SCHEMA.fieldNames())

# Every (user, offer of the user's market) verdict of a recommend run, or a hashed sample of
# users' verdicts (recommend.audit_share); partitioned by snapshot_date.
ELIGIBILITY_AUDIT_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("market", T.StringType(), False),
        T.StructField("offer_id", T.StringType(), False),
        T.StructField("eligible", T.BooleanType(), False),
        T.StructField("reason_code", T.StringType(), True),
        T.StructField("snapshot_date", T.DateType(), False),
    ]
)

# Every eligible offer of the treatment arm's exploration slice (users shown a random list),
# with the rank the treatment policy would have given it: the logged context that off-policy
# evaluation needs (what the policy under test would have shown the users who saw something
# else). Written by recommend, partitioned by snapshot_date.
EXPLORATION_CANDIDATES_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("market", T.StringType(), False),
        T.StructField("offer_id", T.StringType(), False),
        T.StructField("target_rank", T.IntegerType(), False),
        T.StructField("p_convert", T.DoubleType(), False),
        T.StructField("expected_value", T.DoubleType(), False),
        T.StructField("epsilon", T.DoubleType(), False),
        T.StructField("experiment_id", T.StringType(), False),
        T.StructField("model_version", T.StringType(), False),
        T.StructField("snapshot_date", T.DateType(), False),
    ]
)

# The experiment's logs (docs/experiments.md), partitioned by experiment_id. `analyze` reads
# any tables of this shape, simulated or real.
#
# Exposures: one row per (user, rank) of the list each assigned user was served, and one row of
# rank 0 with no offer for a user served nothing (the holdout arm, or nothing eligible). The
# users of this table are the experiment's population; `arm` is their assignment.
# `propensity` is the logging policy's probability of this offer at this rank (see
# recsys/recommend/rank.py); `is_examined` whether the user looked at the slot.
EXPERIMENT_EXPOSURES_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("market", T.StringType(), False),
        T.StructField("arm", T.StringType(), False),
        T.StructField("rank", T.IntegerType(), False),
        T.StructField("offer_id", T.StringType(), True),
        T.StructField("propensity", T.DoubleType(), False),
        T.StructField("reason_code", T.StringType(), False),
        T.StructField("is_examined", T.BooleanType(), False),
        T.StructField("examined_at", T.TimestampType(), True),
        T.StructField("model_version", T.StringType(), False),
        T.StructField("snapshot_date", T.DateType(), False),
        T.StructField("experiment_id", T.StringType(), False),
    ]
)

# Outcomes: one row per user over the experiment window. Money is in the market's currency.
# The 0/1 guardrail columns count events in the window: `cancellation` (a paid subscription
# ended), `downgrade` (back to a cheaper plan, or an add-on dropped), `trial_abuse` (a free
# trial cancelled before its first payment). `pre_revenue` and `pre_engagement` (log1p of
# behaviour events) cover the days before the window: CUPED's covariates. `expected_*` and
# `oracle_*` are the simulator's truth (expected values of the list shown and of the oracle's
# list); null for real data.
EXPERIMENT_OUTCOMES_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("market", T.StringType(), False),
        T.StructField("converted", T.IntegerType(), False),
        T.StructField("converted_offer", T.StringType(), True),
        T.StructField("converted_rank", T.IntegerType(), True),
        T.StructField("converted_at", T.TimestampType(), True),
        T.StructField("revenue", T.DoubleType(), False),
        T.StructField("cancellation", T.IntegerType(), False),
        T.StructField("downgrade", T.IntegerType(), False),
        T.StructField("trial_abuse", T.IntegerType(), False),
        T.StructField("pre_revenue", T.DoubleType(), False),
        T.StructField("pre_engagement", T.DoubleType(), False),
        T.StructField("expected_conversion", T.DoubleType(), True),
        T.StructField("expected_revenue", T.DoubleType(), True),
        T.StructField("oracle_conversion", T.DoubleType(), True),
        T.StructField("oracle_revenue", T.DoubleType(), True),
        T.StructField("window_start", T.DateType(), False),
        T.StructField("window_end", T.DateType(), False),
        T.StructField("experiment_id", T.StringType(), False),
    ]
)

# Results: one row per (market, metric, comparison, adjustment); market "ALL" pools the
# markets (revenue then in `unit` = months of the reference offer's price, so currencies add).
# mean_a / users_a are the first arm of `comparison` (e.g. treatment in treatment_vs_control);
# on `cuped` rows the means are the CUPED-adjusted ones (their difference is the lift).
# `decision` is the market's (on every row of it), from the success metric and guardrails.
POOLED = "ALL"
EXPERIMENT_RESULTS_SCHEMA = T.StructType(
    [
        T.StructField("market", T.StringType(), False),
        T.StructField("metric", T.StringType(), False),
        T.StructField("role", T.StringType(), False),
        T.StructField("unit", T.StringType(), False),
        T.StructField("comparison", T.StringType(), False),
        T.StructField("adjustment", T.StringType(), False),
        T.StructField("users_a", T.LongType(), False),
        T.StructField("users_b", T.LongType(), False),
        T.StructField("mean_a", T.DoubleType(), True),
        T.StructField("mean_b", T.DoubleType(), True),
        T.StructField("lift", T.DoubleType(), True),
        T.StructField("lift_low", T.DoubleType(), True),
        T.StructField("lift_high", T.DoubleType(), True),
        T.StructField("rel_lift", T.DoubleType(), True),
        T.StructField("rel_low", T.DoubleType(), True),
        T.StructField("rel_high", T.DoubleType(), True),
        T.StructField("p_value", T.DoubleType(), True),
        T.StructField("p_adjusted", T.DoubleType(), True),
        T.StructField("variance_reduction", T.DoubleType(), True),
        T.StructField("margin", T.DoubleType(), True),
        T.StructField("verdict", T.StringType(), True),
        T.StructField("srm_p_value", T.DoubleType(), True),
        T.StructField("is_valid", T.BooleanType(), False),
        T.StructField("decision", T.StringType(), True),
        T.StructField("decision_reason", T.StringType(), True),
        T.StructField("required_users_per_arm", T.LongType(), True),
        T.StructField("model_name", T.StringType(), False),
        T.StructField("model_version", T.StringType(), False),
        T.StructField("analyzed_at", T.TimestampType(), False),
        T.StructField("experiment_id", T.StringType(), False),
    ]
)

# Policy values: the conversion rate (and revenue per user) of a policy by one estimator:
# `ab_measured` (the arm's mean), `ips` / `dr` (off-policy, from the exploration slice alone),
# `truth` (the simulator's expected value; the oracle has only this one).
EXPERIMENT_POLICY_VALUES_SCHEMA = T.StructType(
    [
        T.StructField("market", T.StringType(), False),
        T.StructField("policy", T.StringType(), False),
        T.StructField("metric", T.StringType(), False),
        T.StructField("estimator", T.StringType(), False),
        T.StructField("users", T.LongType(), False),
        T.StructField("value", T.DoubleType(), True),
        T.StructField("low", T.DoubleType(), True),
        T.StructField("high", T.DoubleType(), True),
        T.StructField("analyzed_at", T.TimestampType(), False),
        T.StructField("experiment_id", T.StringType(), False),
    ]
)
