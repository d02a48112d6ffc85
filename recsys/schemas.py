"""Table names, column names, schemas and event vocabulary, declared once.

Every reader passes ``schema=`` from here, and every writer ends with a ``select`` of these
columns, so a table's contract is this file.
"""

from __future__ import annotations

from pyspark.sql import types as T

# The plan every user falls back to; no price, no offer to upsell from below.
FREE_PLAN = "free"

# Tables (DESIGN.md section 4).
USERS = "users"
EVENTS = "events"
CATALOG = "catalog"
WORLD_TRUTH = "world_truth"
EVENTS_QUARANTINE = "events_quarantine"
INTERACTIONS = "interactions"
INTERACTION_STATS = "interaction_stats"
# Subscription state of every user at each split point (eligibility for evaluation).
USER_STATE = "user_state"
PLAN_RECOMMENDATIONS = "plan_recommendations"
PLAN_RECOMMENDATIONS_CURRENT = "plan_recommendations_current"
ELIGIBILITY_AUDIT = "eligibility_audit"

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
# Behaviour tokens: the non-offer items of the interaction matrix (DESIGN.md section 6).
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
        T.StructField("price", T.DecimalType(18, 4), False),
        T.StructField("currency", T.StringType(), False),
        T.StructField("locale", T.StringType(), False),
        T.StructField("language", T.StringType(), False),
        T.StructField("display_name", T.StringType(), False),
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

# What marketing surfaces read (DESIGN.md section 4), partitioned by snapshot_date and market.
# A user is served either ranks 1..k of offers, or one row of rank 0 with no offer: the holdout
# arm, or a user with nothing eligible (reason_code says which). The offer columns are null
# exactly on those rows; every other column is never null.
NO_OFFER_RANK = 0
HOLDOUT_REASON = "holdout"
NO_ELIGIBLE_OFFER = "no_eligible_offer"
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
