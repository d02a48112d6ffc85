"""A wide customer x product table as users and events files: ``recsys convert wide``.

Many own data sets are one row per customer: a 0/1 (or Yes/No) column per product held and a
few profile columns, with no dates. A conversion spec (YAML, :class:`WideSpec`) says which
columns are which; :func:`convert` turns the table into the ingest schema
(docs/own-data.md):

- each product held is a ``conversion`` to that product's offer;
- an optional plan column gives each customer's plan (``free`` for none);
- each profile value becomes a behaviour token of event type ``profile`` (``column:value``
  by default, or named in the spec, or a numeric column's bin): the models' user features.

The table has no dates, so the converter makes them up for a leave-one-out evaluation, from
the config's ``interactions.snapshot_date`` S and ``holdout_days`` H:

- per customer with a product, one held product picked by a seeded hash converts inside the
  holdout window [S - H, S); at the split the customer does not hold it yet, so train ranks
  it among the products the customer could still take;
- per customer with two or more, a second one converts inside the validation window
  [S - 2H, S - H), which train's hyperparameter search scores;
- everything else (the plan, the other products, the profile) happens in the four weeks
  before S - 2H.

Same table, spec, dates and seed: the same files.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys import schemas as S
from recsys.errors import RecsysError, validated_yaml
from recsys.interactions.build import cutoffs
from recsys.vocabulary import HOLDOUT, VALIDATION

log = logging.getLogger(__name__)

PROFILE = "profile"  # the behaviour event type of a customer's attributes
HISTORY_DAYS = 28  # the made-up history lies in the HISTORY_DAYS before the validation window
# A row's role: made-up history, or a held-out product in the window of the split of that name.
HISTORY = "history"
_TS_FORMAT = "%Y-%m-%d %H:%M:%S"
_EXAMPLES = 3  # customers an error names


class WideError(RecsysError):
    """The table does not match its conversion spec."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileColumn(_Model):
    """How one profile column becomes tokens; set at most one of ``tokens`` and ``bins``.

    With neither, every value is a token ``<prefix>:<value>`` (lower case, runs of other
    characters than letters and digits as ``_``), an empty cell none.
    """

    tokens: dict[str, str | None] | None = Field(
        default=None,
        description="Value -> token (null: no token). A value not listed is an error.",
    )
    bins: dict[float, str] | None = Field(
        default=None,
        description="Least value -> token, for a numeric column: a value takes the token of "
        "the largest least value at or below it; one below them all is an error.",
    )
    prefix: str | None = Field(
        default=None, description="The tokens' prefix without tokens or bins (default: column)."
    )

    @model_validator(mode="after")
    def _one_way(self) -> ProfileColumn:
        if self.tokens is not None and self.bins is not None:
            raise ValueError("set tokens or bins, not both")
        if self.prefix is not None and (self.tokens is not None or self.bins is not None):
            raise ValueError("prefix names the automatic tokens: not with tokens or bins")
        return self


class PlanColumn(_Model):
    """The column holding each customer's plan, and the plan id of each of its values."""

    column: str
    values: dict[str, str] = Field(description="Value -> plan id (``free`` for no plan).")


class WideSpec(_Model):
    """What the columns of a wide customer x product table are (conf/examples/telco_wide.yaml).

    Exactly one of ``market`` (every customer's) and ``market_column``.
    """

    id_column: str
    market: str | None = None
    market_column: str | None = None
    products: Annotated[dict[str, str], Field(min_length=1)] = Field(
        description="Product column -> the offer id it converts to."
    )
    held: Annotated[list[str], Field(min_length=1)] = Field(
        default=["1", "1.0", "true", "True", "yes", "Yes"],
        description="Cells of a product column that mean the product is held.",
    )
    not_held: list[str] = Field(
        default=["0", "0.0", "false", "False", "no", "No", ""],
        description="Cells that mean it is not; any other value is an error.",
    )
    plan: PlanColumn | None = None
    profile: dict[str, ProfileColumn] = Field(default_factory=dict)
    tenure_months_column: str | None = Field(
        default=None,
        description="Months since the customer joined (sets signup_date); unset: the start "
        "of the made-up history.",
    )
    seed: int = 8

    @model_validator(mode="after")
    def _consistent(self) -> WideSpec:
        if (self.market is None) == (self.market_column is None):
            raise ValueError("set market (one for every customer) or market_column, not both")
        both = set(self.held) & set(self.not_held)
        if both:
            raise ValueError(f"held and not_held share {sorted(both)}")
        return self

    def columns(self) -> list[str]:
        """Every column the conversion reads."""
        named = [self.id_column, self.market_column, self.tenure_months_column]
        named.append(self.plan.column if self.plan else None)
        return [c for c in named if c] + list(self.products) + list(self.profile)


@dataclass(frozen=True)
class Converted:
    """``users``: one row per customer (the ingest users schema, state at the snapshot).
    ``events``: the ingest events schema, plus ``role`` (holdout / validation / history) for
    tests and logs; :func:`write` leaves it out."""

    users: pd.DataFrame
    events: pd.DataFrame

    def tokens(self) -> list[str]:
        """The behaviour tokens written, for ``interactions.behaviour_tokens``."""
        return sorted(self.events.loc[self.events["event_type"] == PROFILE, "item_id"].unique())


def load_spec(path: str | Path) -> WideSpec:
    """The conversion spec at ``path``.

    Raises
    ------
    ConfigError
        When the file is missing, not YAML, or breaks a rule (the message names the key).
    """
    return validated_yaml(path, WideSpec, "conversion spec")


def read_table(path: str | Path, spec: WideSpec) -> pd.DataFrame:
    """The CSV at ``path`` as strings (blank cells stay ""), checked for the spec's columns."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise WideError(f"{path}: cannot read it as a CSV with a header: {exc}") from None
    missing = [c for c in spec.columns() if c not in table.columns]
    if missing:
        raise WideError(f"{path}: lacks columns {missing} (has {list(table.columns)})")
    return table


def convert(
    table: pd.DataFrame, spec: WideSpec, *, snapshot: dt.date, holdout_days: int
) -> Converted:
    """Users and events of ``table`` (rows as strings), dated for a leave-one-out evaluation.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per customer, every cell a string (:func:`read_table`).
    spec : WideSpec
        Which columns are the id, market, plan, products and profile.
    snapshot, holdout_days : datetime.date, int
        ``interactions.snapshot_date`` and ``interactions.holdout_days`` of the config the
        files are for: the holdout and validation windows follow from them.

    Raises
    ------
    WideError
        For a cell the spec does not allow, naming the column, the values and customers.
    """
    ids = table[spec.id_column].reset_index(drop=True)
    if (ids.str.strip() == "").any() or ids.duplicated().any():
        duplicated = ids[ids.duplicated()].head(_EXAMPLES).tolist()
        raise WideError(f"{spec.id_column}: must be non-empty and unique (repeated: {duplicated})")
    table = table.reset_index(drop=True)
    seed = spec.seed
    split, _ = cutoffs(snapshot, holdout_days)
    tune_split = split - dt.timedelta(days=holdout_days)
    markets = table[spec.market_column] if spec.market_column else pd.Series(spec.market, ids.index)
    plans = (
        _mapped(table, ids, spec.plan.column, spec.plan.values)
        if spec.plan
        else pd.Series(S.FREE_PLAN, ids.index)
    )
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

    held = _held_products(table, ids, spec)
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

    profile = _profile_tokens(table, ids, spec)
    profile["event_ts"] = started.reindex(profile["user_id"]).to_numpy() + np.timedelta64(2, "D")
    profile["event_type"] = PROFILE
    profile["role"] = HISTORY

    market_of = pd.Series(markets.to_numpy(), index=ids)
    events = pd.concat([plan_events, held, profile], ignore_index=True)
    events = events.assign(market=market_of.reindex(events["user_id"]).to_numpy(), value=1.0)
    events = events.sort_values(["user_id", "event_ts", "item_id"], ignore_index=True)
    events["event_ts"] = pd.to_datetime(events["event_ts"]).dt.strftime(_TS_FORMAT)
    events = events[["user_id", "market", "event_type", "item_id", "event_ts", "value", "role"]]

    products = held.sort_values("item_id").groupby("user_id")["item_id"].agg(";".join)
    signup = started.dt.normalize().to_numpy()
    if spec.tenure_months_column:
        tenure = _numbers(table, ids, spec.tenure_months_column)
        signup = signup - pd.to_timedelta(30 * tenure, unit="D")
    users = pd.DataFrame(
        {
            "user_id": ids,
            "market": markets.to_numpy(),
            "current_plan": plans,
            "signup_date": pd.to_datetime(signup).strftime("%Y-%m-%d"),
            "active_addons": ids.map(products).fillna(""),
            "is_student_verified": "false",
            "has_used_trial": "false",
        }
    )
    return Converted(users, events)


def write(converted: Converted, users: str | Path, events: str | Path) -> None:
    """``converted`` as the CSV files ``users`` and ``events`` (folders created)."""
    for path in (Path(users), Path(events)):
        path.parent.mkdir(parents=True, exist_ok=True)
    converted.users.to_csv(users, index=False)
    converted.events.drop(columns=["role"]).to_csv(events, index=False)


def _held_products(table: pd.DataFrame, ids: pd.Series, spec: WideSpec) -> pd.DataFrame:
    """(user_id, item_id, role) per product held: the one with the lowest seeded hash is the
    holdout's, the next the validation's, the rest history."""
    allowed = set(spec.held) | set(spec.not_held)
    for column in spec.products:
        _refuse(table, ids, column, ~table[column].isin(allowed), f"expected {sorted(allowed)}")
    cells = table[list(spec.products)].set_axis(ids.to_numpy()).rename_axis("user_id")
    held = cells.reset_index().melt(id_vars="user_id", var_name="column", value_name="cell")
    held = held[held["cell"].isin(spec.held)]
    held = pd.DataFrame(
        {"user_id": held["user_id"], "item_id": held["column"].map(spec.products)}
    ).reset_index(drop=True)
    held["_order"] = _unit(spec.seed, "pick", held["user_id"] + "|" + held["item_id"])
    position = held.groupby("user_id")["_order"].rank(method="first")
    held["role"] = np.select([position == 1, position == 2], [HOLDOUT, VALIDATION], HISTORY)
    return held.drop(columns="_order")


def _profile_tokens(table: pd.DataFrame, ids: pd.Series, spec: WideSpec) -> pd.DataFrame:
    """(user_id, item_id): each customer's profile tokens."""
    frames = []
    for column, how in spec.profile.items():
        if how.tokens is not None:
            tokens = _mapped(table, ids, column, how.tokens)
        elif how.bins is not None:
            values = _numbers(table, ids, column)
            least = sorted(how.bins)
            below = values < least[0]
            _refuse(table, ids, column, pd.Series(below), f"the least bin starts at {least[0]}")
            names = np.array([how.bins[b] for b in least], dtype=object)
            tokens = pd.Series(names[np.searchsorted(least, values, side="right") - 1])
        else:
            cells = table[column]
            slug = cells.map(_slug)
            tokens = (f"{how.prefix or _slug(column)}:" + slug).where(slug != "")
        frames.append(pd.DataFrame({"user_id": ids, "item_id": tokens.to_numpy()}))
    if not frames:
        return pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str)})
    return pd.concat(frames, ignore_index=True).dropna(subset=["item_id"])


def _mapped(
    table: pd.DataFrame, ids: pd.Series, column: str, values: dict[str, str | None]
) -> pd.Series:
    """``column`` through ``values``; a value not listed is an error."""
    unknown = ~table[column].isin(values)
    _refuse(table, ids, column, unknown, f"expected {sorted(values)}")
    return table[column].map(values).reset_index(drop=True)


def _numbers(table: pd.DataFrame, ids: pd.Series, column: str) -> np.ndarray:
    values = pd.to_numeric(table[column], errors="coerce")
    _refuse(table, ids, column, values.isna() | (values < 0), "expected a number, 0 or more")
    return values.to_numpy()


def _refuse(
    table: pd.DataFrame, ids: pd.Series, column: str, bad: pd.Series, expected: str
) -> None:
    if bad.any():
        values = sorted(table.loc[bad.to_numpy(), column].unique())[:10]
        raise WideError(
            f"{column}: unexpected values {values} (customers "
            f"{ids[bad.to_numpy()].head(_EXAMPLES).tolist()}); {expected}"
        )


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


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
