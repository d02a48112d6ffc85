"""The promotion gate on paired per-user metrics, and the aliases it sets in a real MLflow
registry (SQLite): a worse candidate stays challenger, a better one becomes champion."""

from __future__ import annotations

import random
import re

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from recsys import tracking
from recsys.config import GateConfig, TrainConfig
from recsys.models import FAMILIES
from recsys.models.pyfunc import log_pyfunc
from recsys.training import gate
from recsys.training.candidate import choose_candidate
from recsys.training.trainer import Evaluated, FamilyResult
from recsys.vocabulary import ALL

GATE = GateConfig(metric="ndcg", k=3, replicates=200)
USERS = 400


def _per_user(spark, shift: float):
    """ndcg_at_3 per user: a fixed pattern in [0, 1] plus ``shift`` (clipped)."""
    rows = [
        ("SE" if u % 2 else "DE", f"u{u}", min(1.0, max(0.0, (u * 37 % 101) / 100 + shift)))
        for u in range(USERS)
    ]
    return spark.createDataFrame(rows, "market string, user_id string, ndcg_at_3 double")


def _decide(spark, candidate_shift: float, opponent_shift: float) -> gate.Decision:
    table = gate.compare(
        _per_user(spark, candidate_shift),
        {"champion": _per_user(spark, opponent_shift)},
        GATE,
        seed=1,
    )
    return gate.decide(gate.pooled(table), GATE)


def test_a_clearly_better_candidate_passes_and_a_worse_one_does_not(spark):
    assert _decide(spark, 0.05, 0.0).promote
    worse = _decide(spark, -0.05, 0.0)
    assert not worse.promote
    assert re.fullmatch(
        r"not better than champion by more than 0\.00\d\d \(1% of its 0\.\d+\): "
        r"ndcg@3 -0\.04\d\d vs champion "
        r"\(95% CI -0\.0\d+ \.\. -0\.0\d+, 400 users\)",
        worse.reasons[0],
    ), worse.reasons[0]


def test_an_equal_candidate_is_not_promoted(spark):
    decision = _decide(spark, 0.0, 0.0)
    assert not decision.promote


def test_nothing_to_compare_against_promotes_nothing():
    decision = gate.decide([], GATE)
    assert not decision.promote
    assert "nothing to compare against" in decision.reasons[0]


def test_a_refresh_of_the_champion_is_promoted_only_while_it_beats_the_baselines(spark):
    champion = "champion v3 (conversion)"
    alone = gate.decide([], GATE, refreshes=champion)
    assert alone.promote
    assert alone.reasons == (
        f"refreshes {champion}: same family and parameters, fitted on this snapshot",
    )
    ahead = gate.compare(
        _per_user(spark, 0.05), {"popularity": _per_user(spark, 0.0)}, GATE, seed=1
    )
    assert gate.decide(gate.pooled(ahead), GATE, refreshes=champion).promote
    behind = gate.compare(
        _per_user(spark, 0.0), {"popularity": _per_user(spark, 0.05)}, GATE, seed=1
    )
    decision = gate.decide(gate.pooled(behind), GATE, refreshes=champion)
    assert not decision.promote
    assert decision.reasons[0].startswith(f"refreshes {champion}")
    assert decision.reasons[1].startswith("not better than popularity")


def test_the_margin_is_respected(spark):
    strict = GateConfig(metric="ndcg", k=3, replicates=200, margin=0.1)
    table = gate.compare(_per_user(spark, 0.05), {"ladder": _per_user(spark, 0.0)}, strict, seed=1)
    assert not gate.decide(gate.pooled(table), strict).promote


def test_a_real_but_tiny_gain_is_not_worth_a_switch(spark):
    """+0.003 on every user: the interval is above zero, but below 1% of the opponent's
    figure (about 0.5), the default least relative gain."""
    table = gate.compare(
        _per_user(spark, 0.003), {"popularity": _per_user(spark, 0.0)}, GATE, seed=1
    )
    (comparison,) = gate.pooled(table)
    assert comparison.low > 0
    decision = gate.decide([comparison], GATE)
    assert not decision.promote
    assert "(1% of its 0." in decision.reasons[0]
    anything = GATE.model_copy(update={"min_relative_gain": 0.0})
    assert gate.decide([comparison], anything).promote


def test_the_paired_difference_is_computed_over_the_same_users(spark):
    table = gate.compare(_per_user(spark, 0.0), {"self": _per_user(spark, 0.0)}, GATE, seed=1)
    row = table.iloc[0]
    assert (row["mean"], row["low"], row["high"], row["n"]) == (0.0, 0.0, 0.0, USERS)


@pytest.mark.parametrize("by", [(), ("market",)])
def test_one_pass_over_several_opponents_gives_each_its_own_interval(spark, by):
    """The gate and the candidate's choice compare with every opponent in one bootstrap: each
    row is the one a bootstrap of that opponent alone gives, in the order asked."""
    candidate = _per_user(spark, 0.02)
    opponents = {"ladder": _per_user(spark, 0.03), "popularity": _per_user(spark, -0.01)}
    together = gate.compare(candidate, opponents, GATE, seed=5, by=by)
    alone = pd.concat(
        [gate.compare(candidate, {k: v}, GATE, seed=5, by=by) for k, v in opponents.items()],
        ignore_index=True,
    )
    assert together["opponent"].drop_duplicates().tolist() == ["ladder", "popularity"]
    pd.testing.assert_frame_equal(together, alone, check_exact=False, rtol=1e-12)
    assert (together.groupby("opponent")["low"].nunique() == (2 if by else 1)).all()


def test_an_opponent_without_users_fails_the_gate_instead_of_dropping_out(spark):
    nobody = _per_user(spark, 0.0).limit(0)
    table = gate.compare(nobody, {"popularity": nobody}, GATE, seed=1)
    (comparison,) = gate.pooled(table)
    assert (comparison.opponent, comparison.users) == ("popularity", 0)
    assert not gate.decide([comparison], GATE).promote


@pytest.fixture
def registry(spark, tmp_path, config):
    """A fresh SQLite tracking store and a small logged model to register."""
    local = config.model_copy(
        update={
            "mlflow": config.mlflow.model_copy(
                update={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
            )
        }
    )
    tracking.setup(local)
    interactions_df = spark.createDataFrame(
        [("SE", 0, 0, "u0", "premium_family", True, 1.0)],
        "market string, user_idx long, item_idx long, user_id string, item_id string, "
        "is_offer boolean, confidence double",
    )
    model = FAMILIES["popularity"]({}, seed=1).fit(interactions_df)
    model.save((tmp_path / "model").as_uri())
    with mlflow.start_run(run_name="gate test"):
        info = log_pyfunc("model", str(tmp_path / "model"))
    yield MlflowClient(), info.model_uri
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)


def test_aliases_follow_the_decisions(spark, registry):
    client, model_uri = registry
    name = "gate-test"

    def aliases():
        return {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}

    first = tracking.register(name, model_uri, tags={"recsys.family": "popularity"})
    tracking.set_aliases(client, name, first, promote=True)
    assert aliases() == {"champion": first}

    worse = tracking.register(name, model_uri, tags={"recsys.family": "popularity"})
    tracking.set_aliases(client, name, worse, promote=_decide(spark, -0.05, 0.0).promote)
    assert aliases() == {"champion": first, "challenger": worse}
    assert str(tracking.champion(client, name).version) == first

    better = tracking.register(name, model_uri, tags={"recsys.family": "popularity"})
    tracking.set_aliases(client, name, better, promote=_decide(spark, 0.05, 0.0).promote)
    assert aliases() == {"champion": better}


def _family(spark, family: str, level: float, seed: int):
    """A family's validation figures: ndcg_at_3 per user around ``level``, with noise of
    its own (``seed``), so that close families differ by chance, not by a constant."""
    rng = random.Random(seed)
    rows = [
        ("SE", f"u{u}", min(1.0, max(0.0, level + rng.uniform(-0.3, 0.3)))) for u in range(USERS)
    ]
    per_user_df = spark.createDataFrame(rows, "market string, user_id string, ndcg_at_3 double")
    mean = sum(r[2] for r in rows) / USERS
    table = pd.DataFrame({"ndcg_at_3": [mean]}, index=pd.Index([ALL], name="market"))
    evaluated = Evaluated(family, {}, per_user_df, table)
    return FamilyResult(family, [evaluated], evaluated, evaluated)


def test_a_lead_within_the_interval_goes_to_the_simpler_family(spark):
    settings = TrainConfig.model_construct(gate=GATE, seed=7)  # choose_candidate reads only these
    families = ["popularity", "implicit_bpr", "conversion"]

    def candidate(levels):
        results = {f: _family(spark, f, level, n) for n, (f, level) in enumerate(levels.items())}
        return choose_candidate(results, families, settings)

    chosen, because = candidate({"popularity": 0.3, "implicit_bpr": 0.5, "conversion": 0.505})
    assert chosen.family == "implicit_bpr"
    assert "ties on validation with conversion" in because and "does not exclude zero" in because
    chosen, because = candidate({"popularity": 0.3, "implicit_bpr": 0.4, "conversion": 0.5})
    assert chosen.family == "conversion"
    assert "vs popularity" in because and "vs implicit_bpr" in because
    # Popularity, the simplest, is chosen when nothing clears it.
    chosen, _ = candidate({"popularity": 0.5, "implicit_bpr": 0.4, "conversion": 0.502})
    assert chosen.family == "popularity"
    # ... unless train.candidate names a family.
    settings = settings.model_copy(update={"candidate": "implicit_bpr"})
    chosen, because = candidate({"popularity": 0.5, "implicit_bpr": 0.4, "conversion": 0.502})
    assert chosen.family == "implicit_bpr" and because.startswith("named by train.candidate")
