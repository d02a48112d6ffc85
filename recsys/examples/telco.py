"""IBM's Telco customer sample as recsys's own-data files, dated so that a leave-one-out
evaluation runs through the same time split, evaluation and report as the synthetic world.

    python -m recsys.examples.telco --csv ../shared/data/telco/Telco-Customer-Churn.csv \\
        --out .recsys/telco/data

writes ``users.csv`` and ``events.csv`` in the ingest schema (README "Bring your own data"),
for ``recsys pipeline --conf conf/examples/telco.yaml``. The CSV has one row per customer:

- a customer is a user of one market, ``US`` (it is IBM's US sample);
- InternetService is the plan: ``dsl``, ``fiber_optic``, or ``free`` for "No" (phone only:
  every market has a free plan, and no add-on can ride on it);
- each of the six add-ons held ("Yes") is a ``conversion`` to an add-on offer that requires an
  internet plan (``requires_plans`` in ``conf/examples/telco_markets.yaml``), so for a
  customer without internet the add-ons are not offered at all (``addon_needs_plan``);
- contract, payment method, paperless billing, phone lines, senior / partner / dependents and
  a tenure bucket are behaviour tokens (event type ``profile``): the models' user features.
  MonthlyCharges and TotalCharges are left out because they add up the services held and
  would give the hidden add-on away; gender and Churn are left out too.

The CSV has no dates, so the converter makes them up, from ``snapshot`` S and
``holdout_days`` H (the windows of :mod:`recsys.interactions.build`):

- per customer with an add-on, one held add-on picked by a seeded hash converts inside the
  holdout window [S - H, S). At the split the customer does not hold it yet, so train ranks
  it among the add-ons the customer could still buy: leave-one-out;
- per customer with two or more, a second one converts inside the validation window
  [S - 2H, S - H), which train's hyperparameter search scores;
- everything else (the plan, the other add-ons, the profile tokens) happens in the four weeks
  before S - 2H.

Same CSV, dates and seed: the same files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import schemas as S
from recsys.interactions.build import cutoffs

MARKET = "US"
PROFILE = "profile"  # the behaviour event type of a customer's attributes
SNAPSHOT = dt.date(2026, 11, 1)  # the defaults of conf/examples/telco.yaml
HOLDOUT_DAYS = 28
SEED = 8
HISTORY_DAYS = 28  # the made-up history lies in the HISTORY_DAYS before the validation window

PLANS = {"DSL": "dsl", "Fiber optic": "fiber_optic", "No": S.FREE_PLAN}
NO_INTERNET = "No internet service"
ADDONS = {
    "OnlineSecurity": "online_security",
    "OnlineBackup": "online_backup",
    "DeviceProtection": "device_protection",
    "TechSupport": "tech_support",
    "StreamingTV": "streaming_tv",
    "StreamingMovies": "streaming_movies",
}
# Column -> every value it may hold -> the token it gives (None: no token).
PROFILE_COLUMNS: dict[str, dict[str, str | None]] = {
    "Contract": {
        "Month-to-month": "contract:month_to_month",
        "One year": "contract:one_year",
        "Two year": "contract:two_year",
    },
    "PaymentMethod": {
        "Electronic check": "payment:electronic_check",
        "Mailed check": "payment:mailed_check",
        "Bank transfer (automatic)": "payment:bank_transfer",
        "Credit card (automatic)": "payment:credit_card",
    },
    "PaperlessBilling": {"Yes": "billing:paperless", "No": "billing:paper"},
    "MultipleLines": {
        "No phone service": "phone:none",
        "No": "phone:one_line",
        "Yes": "phone:multiple_lines",
    },
    "SeniorCitizen": {"1": "household:senior", "0": None},
    "Partner": {"Yes": "household:partner", "No": None},
    "Dependents": {"Yes": "household:dependents", "No": None},
}
# (least tenure in months, token), ascending.
TENURE_BUCKETS = (
    (0, "tenure:0-11m"),
    (12, "tenure:12-23m"),
    (24, "tenure:24-47m"),
    (48, "tenure:48m+"),
)
TOKENS = (
    *(t for values in PROFILE_COLUMNS.values() for t in values.values() if t is not None),
    *(token for _, token in TENURE_BUCKETS),
)
COLUMNS = ("customerID", "tenure", "InternetService", *ADDONS, *PROFILE_COLUMNS)

HOLDOUT, VALIDATION, HISTORY = "holdout", "validation", "history"
_TS_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Converted:
    """``users``: one row per customer (the ingest users schema, state at the snapshot).
    ``events``: the ingest events schema, plus ``role`` (holdout / validation / history) for
    tests and logs; :func:`write` leaves it out."""

    users: pd.DataFrame
    events: pd.DataFrame


def read_customers(path: str | Path) -> pd.DataFrame:
    """The CSV as strings (blank cells stay ""), checked for the columns the mapping reads."""
    customers = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in customers.columns]
    if missing:
        raise ValueError(f"{path}: lacks columns {missing}")
    return customers


def convert(
    customers: pd.DataFrame,
    *,
    snapshot: dt.date = SNAPSHOT,
    holdout_days: int = HOLDOUT_DAYS,
    seed: int = SEED,
) -> Converted:
    """Users and events of ``customers`` (rows of the Telco CSV, as strings)."""
    _check(customers)
    split, _ = cutoffs(snapshot, holdout_days)
    tune_split = split - dt.timedelta(days=holdout_days)
    ids = customers["customerID"].reset_index(drop=True)
    plans = customers["InternetService"].map(PLANS).reset_index(drop=True)
    # Each customer's made-up history starts somewhere in the first half of its four weeks.
    started = pd.Series(
        _naive(tune_split - dt.timedelta(days=HISTORY_DAYS))
        + _offset(seed, "history", ids, days=HISTORY_DAYS / 2),
        index=ids,
    )

    plan_events = pd.DataFrame(
        {
            "user_id": ids,
            "event_type": S.CONVERSION,
            "item_id": plans,
            "event_ts": started.to_numpy(),
            "role": HISTORY,
        }
    )[plans != S.FREE_PLAN]

    held = _held_addons(customers, seed)
    role = held["role"]
    held["event_ts"] = np.select(
        [role == HOLDOUT, role == VALIDATION],
        [
            _naive(split) + _offset(seed, HOLDOUT, held["user_id"], days=holdout_days),
            _naive(tune_split) + _offset(seed, VALIDATION, held["user_id"], days=holdout_days),
        ],
        default=started.reindex(held["user_id"]).to_numpy() + np.timedelta64(1, "D"),
    )
    held["event_type"] = S.CONVERSION

    profile = _profile_tokens(customers)
    profile["event_ts"] = started.reindex(profile["user_id"]).to_numpy() + np.timedelta64(2, "D")
    profile["event_type"] = PROFILE
    profile["role"] = HISTORY

    events = (
        pd.concat([plan_events, held, profile], ignore_index=True)
        .assign(market=MARKET, value=1.0)
        .sort_values(["user_id", "event_ts", "item_id"], ignore_index=True)
    )
    events["event_ts"] = pd.to_datetime(events["event_ts"]).dt.strftime(_TS_FORMAT)
    events = events[["user_id", "market", "event_type", "item_id", "event_ts", "value", "role"]]

    addons = held.sort_values("item_id").groupby("user_id")["item_id"].agg(";".join)
    tenure = pd.to_numeric(customers["tenure"]).to_numpy()
    signup = started.dt.normalize().to_numpy() - pd.to_timedelta(30 * tenure, unit="D")
    users = pd.DataFrame(
        {
            "user_id": ids,
            "market": MARKET,
            "current_plan": plans,
            "signup_date": pd.to_datetime(signup).strftime("%Y-%m-%d"),
            "active_addons": ids.map(addons).fillna(""),
            "is_student_verified": "false",
            "has_used_trial": "false",
        }
    )
    return Converted(users, events)


def write(converted: Converted, out: str | Path) -> tuple[Path, Path]:
    """``users.csv`` and ``events.csv`` under ``out`` (created); returns their paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    users, events = folder / "users.csv", folder / "events.csv"
    converted.users.to_csv(users, index=False)
    converted.events.drop(columns=["role"]).to_csv(events, index=False)
    return users, events


def _check(customers: pd.DataFrame) -> None:
    """Fail on values the mapping does not know, naming the column and a few customers."""
    ids = customers["customerID"]
    if (ids.str.strip() == "").any() or ids.duplicated().any():
        raise ValueError("customerID must be non-empty and unique")
    allowed = {
        "InternetService": set(PLANS),
        **{column: {"Yes", "No", NO_INTERNET} for column in ADDONS},
        **{column: set(values) for column, values in PROFILE_COLUMNS.items()},
    }
    for column, values in allowed.items():
        bad = ~customers[column].isin(values)
        if bad.any():
            raise ValueError(
                f"{column}: unexpected values {sorted(customers.loc[bad, column].unique())} "
                f"(customers {ids[bad].head(3).tolist()}); expected {sorted(values)}"
            )
    tenure = pd.to_numeric(customers["tenure"], errors="coerce")
    bad_tenure = tenure.isna() | (tenure < 0)
    if bad_tenure.any():
        raise ValueError(
            f"tenure: not a count of months for customers {ids[bad_tenure].head(3).tolist()}"
        )
    no_internet = customers["InternetService"] == "No"
    for column in ADDONS:
        mismatch = no_internet != (customers[column] == NO_INTERNET)
        if mismatch.any():
            raise ValueError(
                f"{column}: {NO_INTERNET!r} exactly when InternetService is 'No' expected "
                f"(customers {ids[mismatch].head(3).tolist()})"
            )


def _held_addons(customers: pd.DataFrame, seed: int) -> pd.DataFrame:
    """(user_id, item_id, role) per add-on held: the one with the lowest seeded hash is the
    holdout's, the next the validation's, the rest history."""
    held = customers.melt(
        id_vars=["customerID"], value_vars=list(ADDONS), var_name="column", value_name="value"
    )
    held = held[held["value"] == "Yes"]
    held = pd.DataFrame(
        {"user_id": held["customerID"], "item_id": held["column"].map(ADDONS)}
    ).reset_index(drop=True)
    held["_order"] = _unit(seed, "pick", held["user_id"] + "|" + held["item_id"])
    position = held.groupby("user_id")["_order"].rank(method="first")
    held["role"] = np.select([position == 1, position == 2], [HOLDOUT, VALIDATION], HISTORY)
    return held.drop(columns="_order")


def _profile_tokens(customers: pd.DataFrame) -> pd.DataFrame:
    """(user_id, item_id): the customer's profile tokens, those of PROFILE_COLUMNS and the
    tenure bucket."""
    frames = [
        pd.DataFrame({"user_id": customers["customerID"], "item_id": customers[c].map(tokens)})
        for c, tokens in PROFILE_COLUMNS.items()
    ]
    tenure = pd.to_numeric(customers["tenure"]).to_numpy()
    bucket = np.searchsorted([least for least, _ in TENURE_BUCKETS], tenure, side="right") - 1
    names = np.array([token for _, token in TENURE_BUCKETS], dtype=object)
    frames.append(pd.DataFrame({"user_id": customers["customerID"], "item_id": names[bucket]}))
    return pd.concat(frames, ignore_index=True).dropna(subset=["item_id"])


def _unit(seed: int, salt: str, keys: pd.Series) -> np.ndarray:
    """A uniform number in [0, 1) per key, from a hash of (seed, salt, key): reproducible,
    and independent of row order."""
    text = (f"{seed}|{salt}|" + keys.astype(str)).to_numpy(dtype=object)
    hashed = pd.util.hash_array(text)  # 64 bits, fixed key: the same on every machine
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _offset(seed: int, salt: str, keys: pd.Series, *, days: float) -> np.ndarray:
    """Whole seconds in [0, days), per key."""
    seconds = np.floor(_unit(seed, salt, keys) * days * 86_400).astype(np.int64)
    return seconds.astype("timedelta64[s]")


def _naive(moment: dt.datetime) -> np.datetime64:
    """A UTC moment as numpy's naive datetime (the files carry UTC without a zone)."""
    return np.datetime64(moment.astimezone(dt.UTC).replace(tzinfo=None), "s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recsys.examples.telco", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--csv", required=True, help="Telco-Customer-Churn.csv")
    parser.add_argument("--out", required=True, help="folder for users.csv and events.csv")
    parser.add_argument(
        "--snapshot",
        type=dt.date.fromisoformat,
        default=SNAPSHOT,
        help="interactions.snapshot_date of the config (default: %(default)s)",
    )
    parser.add_argument(
        "--holdout-days",
        type=int,
        default=HOLDOUT_DAYS,
        help="interactions.holdout_days of the config (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=SEED, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        converted = convert(
            read_customers(args.csv),
            snapshot=args.snapshot,
            holdout_days=args.holdout_days,
            seed=args.seed,
        )
    except (OSError, ValueError) as exc:
        print(f"telco: error: {exc}", file=sys.stderr)
        return 2
    users, events = write(converted, args.out)
    roles = converted.events["role"].value_counts()
    print(
        f"telco: {len(converted.users):,} customers -> {users}; "
        f"{len(converted.events):,} events -> {events} "
        f"({roles.get(HOLDOUT, 0):,} held-out add-ons in the holdout window, "
        f"{roles.get(VALIDATION, 0):,} in the validation window)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
