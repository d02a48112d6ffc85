"""Ninety days of behaviour and subscription events, logged under a legacy exposure policy.

All of it is per-user column arithmetic over arrays (no shuffle, no driver loop): each user's
opportunities to convert (legacy impressions and organic plan-page views) are drawn as an
array, the first accepted one becomes the conversion, and every event type is an array of
``struct(event_type, item_id, ts, value)`` exploded once at the end.
"""

from __future__ import annotations

import datetime as dt
import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys import schemas as S
from recsys.columns import column_map, literal_map
from recsys.config import WorldConfig
from recsys.markets import MarketCatalog
from recsys.rand import Rng
from recsys.world import response
from recsys.world.population import utility_col

DAY = 86_400
IMPRESSIONS_FREE = 4.0  # per 90 days: paywalls and in-app messages shown to free users
IMPRESSIONS_PAID = 1.5
PAGE_VIEWS = 1.2
ORGANIC_ACCEPT = 0.6  # a page view converts less often than a targeted offer


_TOTAL, _WEIGHT_OF = "_legacy_total", "_legacy_weight_of"


def _log_weight(offer_id: str) -> str:
    return f"_legacy_log_weight__{offer_id}"


def _indices(n: Column) -> Column:
    """[1..n], empty for n <= 0 (``sequence(1, 0)`` would count down). ``n`` appears once:
    it is often a Poisson draw, which would be computed again for each appearance."""
    return F.filter(F.sequence(F.lit(0), F.greatest(n, F.lit(0))), lambda i: i > 0)


def _only_if(condition: Column, event: Column) -> Column:
    """[event] when condition holds, else an empty array of the same type."""
    return F.filter(F.array(event), lambda _: F.coalesce(condition, F.lit(False)))


def _event(event_type: str | Column, item: Column, ts: Column, value: Column) -> Column:
    return F.struct(
        (F.lit(event_type) if isinstance(event_type, str) else event_type).alias("event_type"),
        item.cast("string").alias("item_id"),
        ts.cast("long").alias("ts"),
        value.cast("double").alias("value"),
    )


class History:
    """Column builders for one world; every method returns a Column over the user row."""

    def __init__(self, world: WorldConfig, markets: MarketCatalog) -> None:
        self.world = world
        self.markets = markets
        self.rng = Rng(world.seed, F.col("id"))
        end = dt.datetime.combine(world.end_date, dt.time(), tzinfo=dt.UTC)
        self.end = int(end.timestamp())
        self.start = self.end - world.days * DAY
        self.scale = world.days / 90.0
        self.offers = markets.offer_types
        self.plan_of = literal_map({o: t.plan_id for o, t in self.offers.items()})
        self.kind_of = literal_map({o: t.kind for o, t in self.offers.items()})
        self.period_of = literal_map({o: t.period_days for o, t in self.offers.items()})
        self.tier_of = literal_map(markets.plan_tiers())

    # -- time -----------------------------------------------------------------------------
    def ts_between(self, tag: str, lo: Column, hi: Column, *extra: Column) -> Column:
        return F.floor(lo + self.rng.uniform(tag, *extra) * (hi - lo))

    def ts_in_window(self, tag: str, *extra: Column) -> Column:
        return self.ts_between(tag, F.lit(self.start), F.lit(self.end), *extra)

    # -- acceptance -----------------------------------------------------------------------
    def accept_map(self, plan: Column, tier: Column, used_trial: Column, addons: Column) -> Column:
        """map<offer_id, P(accept)> for the offers the user's market sells, given a state."""
        current_fit = response.current_plan_fit(plan, self.markets.plan_ids())
        probabilities = {
            offer_id: response.accept_probability(
                F.col(utility_col(offer_id)),
                current_fit,
                response.is_feasible(offer, plan, tier, used_trial, addons, offer_id),
            )
            for offer_id, offer in self.offers.items()
        }
        return column_map(probabilities, drop_nulls=True)

    def legacy_weights(self) -> dict[str, Column]:
        """Relative weight of each offer under the legacy policy, null when not shown.

        The policy sees only what a marketer sees: plan, add-ons, verification, trial use.
        """
        plan = F.col("initial_plan")
        weights = {}
        for offer_id, offer in self.offers.items():
            by_plan = [
                (p, w.get(offer_id)) for p, w in self.world.legacy_policy.items() if w.get(offer_id)
            ]
            if not by_plan:
                continue
            weight = None
            for p, w in by_plan:
                weight = (F.when if weight is None else weight.when)(plan == p, F.lit(w))
            shown = F.col(utility_col(offer_id)).isNotNull()  # the market sells it
            if offer.trial_days:
                shown = shown & ~F.col("prior_trial")
            if offer.requires_verification:
                shown = shown & F.col("is_student_verified")
            if offer.kind == "addon":
                shown = shown & ~F.array_contains(F.col("initial_addons"), offer_id)
            weights[offer_id] = F.when(shown, weight)
        return weights

    def with_policy(self, users_df: DataFrame) -> DataFrame:
        """Adds the legacy policy's weights for each user as columns (listed by
        :meth:`policy_columns`), which :meth:`opportunities` reads.

        A lambda of a higher-order function is interpreted once per array element, and so is
        every outer expression it refers to: computed here once per user, the weights cost
        the impressions' lambda a column read instead of (offers x plans) comparisons.
        """
        weights = self.legacy_weights()
        total = F.aggregate(
            F.array(*[F.coalesce(w, F.lit(0.0)) for w in weights.values()]),
            F.lit(0.0),
            lambda acc, w: acc + w,
        )
        return users_df.select(
            "*",
            total.alias(_TOTAL),
            column_map(weights, drop_nulls=True).alias(_WEIGHT_OF),
            *(F.log(w).alias(_log_weight(o)) for o, w in weights.items()),
        )

    def policy_columns(self) -> list[str]:
        """The columns :meth:`with_policy` adds."""
        return [_TOTAL, _WEIGHT_OF, *map(_log_weight, self.legacy_weights())]

    def opportunities(self) -> Column:
        """Legacy impressions and organic page views, each with its acceptance draw, for rows
        that went through :meth:`with_policy`.

        array<struct<ts, offer_id, propensity, source, accepted>>, sorted by time.
        """
        total, weight_of = F.col(_TOTAL), F.col(_WEIGHT_OF)
        rate = F.when(F.col("initial_plan") == response.FREE, IMPRESSIONS_FREE).otherwise(
            IMPRESSIONS_PAID
        )
        n_impressions = F.when(total > 0, self.rng.poisson("impressions", rate * self.scale))
        log_weights = {o: F.col(_log_weight(o)) for o in self.legacy_weights()}

        def drawn(tag: str, weights: dict[str, Column], n: Column) -> Column:
            """[(k, offer)] for k in 1..n: each draw's offer computed once, as the structs
            below read it up to three times (an outer expression is evaluated per use)."""
            return F.transform(
                _indices(n),
                lambda k: F.struct(k.alias("k"), self.rng.choice(tag, weights, k).alias("offer")),
            )

        def impression(draw: Column) -> Column:
            k, offer = draw["k"], draw["offer"]
            return F.struct(
                self.ts_in_window("impression_ts", k).alias("ts"),
                offer.alias("offer_id"),
                (weight_of[offer] / total).alias("propensity"),
                F.lit("legacy").alias("source"),
                (self.rng.uniform("impression_accept", k) < F.col("p_initial")[offer]).alias(
                    "accepted"
                ),
            )

        interest = {o: F.col(utility_col(o)) for o in self.offers if o != response.FREE}

        def page_view(draw: Column) -> Column:
            k, offer = draw["k"], draw["offer"]
            accept = ORGANIC_ACCEPT * F.col("p_initial")[offer]
            return F.struct(
                self.ts_in_window("view_ts", k).alias("ts"),
                offer.alias("offer_id"),
                F.lit(None).cast("double").alias("propensity"),
                F.lit("organic").alias("source"),
                (self.rng.uniform("view_accept", k) < accept).alias("accepted"),
            )

        impressions = F.transform(
            drawn("impression", log_weights, F.coalesce(n_impressions, F.lit(0))), impression
        )
        views = F.transform(
            drawn("view", interest, self.rng.poisson("views", F.lit(PAGE_VIEWS * self.scale))),
            page_view,
        )
        return F.array_sort(F.concat(impressions, views))

    # -- events ---------------------------------------------------------------------------
    def behaviour_events(self) -> Column:
        rng, scale = self.rng, self.scale
        hours, household = F.col("listening_hours"), F.col("household_size")
        latin = F.col("market").isin("ES", "MX", "BR", "AR", "CO", "CL").cast("double")
        genres = {
            "pop": F.lit(0.0),
            "hiphop": F.lit(-0.2),
            "rock": F.lit(-0.4),
            "latin": -1.5 + 2.0 * latin,
            "classical": -1.6 + 1.5 * F.col("audiobook_affinity"),
            "kids": -3.0 + 3.2 * (household >= 3).cast("double"),
            "podcasts": -1.2 + 2.5 * F.col("audiobook_affinity"),
        }

        def listen(k: Column) -> Column:
            genre = rng.choice("genre", {f"genre:{g}": w for g, w in genres.items()}, k)
            minutes = F.round(F.exp(3.4 + 0.5 * rng.normal("minutes", k)), 1)
            return _event(S.LISTEN, genre, self.ts_in_window("listen_ts", k), minutes)

        # Free-tier frustrations happen only while the user is on the free plan.
        free_from, free_to = F.col("free_from"), F.col("free_to")
        free_share = (free_to - free_from) / F.lit(self.end - self.start)

        def repeated(event_type: str, token: str, lam: Column, value: Column, free_only=False):
            n = rng.poisson(event_type, lam * scale * (free_share if free_only else F.lit(1.0)))

            def one(k: Column) -> Column:
                ts = (
                    self.ts_between(f"{event_type}_ts", free_from, free_to, k)
                    if free_only
                    else self.ts_in_window(f"{event_type}_ts", k)
                )
                return _event(event_type, F.lit(token), ts, value)

            return F.transform(_indices(n), one)

        one_count = F.lit(1.0)
        student = _only_if(
            F.col("is_student_verified"),
            _event(S.STUDENT_VERIFIED, F.lit("signal:student"), self.ts_in_window("sv"), one_count),
        )
        return F.concat(
            F.transform(_indices(rng.poisson("listens", 6.0 * hours * scale)), listen),
            repeated(
                S.SKIP_LIMIT_HIT,
                "signal:skip_limit",
                4.5 * hours * (1 - F.col("ad_tolerance")),
                one_count,
                free_only=True,
            ),
            repeated(
                S.OFFLINE_DOWNLOAD_ATTEMPT,
                "signal:offline",
                7.0 * F.pow(F.col("offline_need"), 2),
                one_count,
            ),
            repeated(
                S.AUDIOBOOK_PREVIEW,
                "signal:audiobook",
                10.0 * F.pow(F.col("audiobook_affinity"), 2),
                one_count,
            ),
            repeated(
                S.HOUSEHOLD_COLISTEN,
                "signal:household",
                1.5 * (household - 1),
                household.cast("double"),
            ),
            student,
        )

    def subscription_events(self) -> Column:
        opportunities = F.col("opportunities")
        impressions = F.transform(
            F.filter(opportunities, lambda o: o["source"] == "legacy"),
            lambda o: _event(S.OFFER_IMPRESSION, o["offer_id"], o["ts"], o["propensity"]),
        )
        views = F.transform(
            F.filter(opportunities, lambda o: o["source"] == "organic"),
            lambda o: _event(S.PLAN_PAGE_VIEW, o["offer_id"], o["ts"], F.lit(1.0)),
        )
        conv = F.col("conversion")
        conv_offer = conv["offer_id"]
        conv_ts = conv["ts"] + 60
        price = F.col("price")
        is_trial = F.col("converted_is_trial")
        conversion = _only_if(
            conv.isNotNull(),
            _event(
                F.when(is_trial, S.TRIAL_START).otherwise(S.CONVERSION),
                conv_offer,
                conv_ts,
                F.when(is_trial, 0.0).otherwise(price[conv_offer]),
            ),
        )

        # Renewals of the starting plan until it ends, then of the new offer.
        plan = F.col("initial_plan")
        phase = F.floor(self.rng.uniform("renewal_phase") * 30 * DAY)
        paid_until = F.least(
            F.coalesce(F.when(F.col("converted_kind") != "addon", conv_ts), F.lit(self.end)),
            F.coalesce(F.col("cancel_ts"), F.lit(self.end)),
        )
        n_old = math.ceil(self.world.days / 30) + 1
        old = F.filter(
            F.transform(
                F.sequence(F.lit(0), F.lit(n_old)),
                lambda j: _event(S.RENEWAL, plan, self.start + phase + j * 30 * DAY, price[plan]),
            ),
            lambda e: (e["ts"] < paid_until) & (plan != response.FREE),
        )
        period = self.period_of[conv_offer] * DAY
        new = F.filter(
            F.transform(
                F.sequence(F.lit(1), F.lit(n_old)),
                lambda j: _event(S.RENEWAL, conv_offer, conv_ts + j * period, price[conv_offer]),
            ),
            lambda e: conv.isNotNull() & (e["ts"] < self.end),
        )
        # Add-ons held from the start renew monthly until the subscription is cancelled.
        addon_phase = F.floor(self.rng.uniform("addon_phase") * 30 * DAY)
        addons = F.filter(
            F.flatten(
                F.transform(
                    F.col("initial_addons"),
                    lambda addon: F.transform(
                        F.sequence(F.lit(0), F.lit(n_old)),
                        lambda j: _event(
                            S.RENEWAL, addon, self.start + addon_phase + j * 30 * DAY, price[addon]
                        ),
                    ),
                )
            ),
            lambda e: e["ts"] < F.coalesce(F.col("cancel_ts"), F.lit(self.end)),
        )
        cancellation = _only_if(
            F.col("cancel_ts").isNotNull(),
            _event(S.CANCELLATION, plan, F.col("cancel_ts"), F.lit(0.0)),
        )
        return F.concat(impressions, views, conversion, old, new, addons, cancellation)
