from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import pytest
import yaml

from recsys.cli import main
from recsys.config import Arm, load_config, loading, with_ingest
from recsys.errors import ConfigError
from recsys.pipeline import settings_of
from recsys.schemas import BEHAVIOUR_TOKENS, EVENT_TYPES
from recsys.vocabulary import ARMS
from tests.conftest import LOCAL_CONF, ROOT


def test_local_config_is_the_embedded_default():
    config = load_config(LOCAL_CONF)
    assert config.spark.master == "local[*]"
    assert config.spark.hive is True
    assert config.catalog.warehouse_dir == str(Path(".recsys/warehouse").resolve())
    assert config.catalog.metastore_dir == str(Path(".recsys/metastore").resolve())
    assert config.mlflow.tracking_uri == f"sqlite:///{Path('.recsys/mlflow.db').resolve()}"
    assert config.world.end_date == dt.date(2026, 11, 1)
    assert len(config.markets.markets) >= 12


def test_cluster_config_validates():
    config = load_config(ROOT / "conf" / "cluster.yaml")
    assert config.spark.master.startswith("spark://")
    assert config.catalog.metastore_dir is None
    assert config.mlflow.tracking_uri.startswith("http")


def test_overrides_are_typed_yaml_scalars():
    config = load_config(
        LOCAL_CONF, ["world.users=50_000", "world.end_date=2026-06-30", "spark.hive=false"]
    )
    assert config.world.users == 50_000
    assert config.world.end_date == dt.date(2026, 6, 30)
    assert config.spark.hive is False


def test_the_arms_a_config_shares_out_are_the_arms_recommend_assigns():
    assert get_args(Arm) == ARMS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["world.users=-5"], "world.users: Input should be greater than or equal to 100"),
        (["world.userz=5"], "world.userz: unknown key"),
        (["spark.shuffle_partitions=0"], "spark.shuffle_partitions"),
        (["catalog.keep_versions=many"], "catalog.keep_versions"),
        (["world.legacy_policy.free.no_such_offer=1"], "world.legacy_policy.free.no_such_offer"),
        (["spark.extra.executor.memory=4g"], "spark.extra"),
        (["world"], "--set expects dotted.key=value"),
        (["recommend.experiment.shares.holdout=0.5"], "shares must sum to 1, they sum to 1.4"),
        (["recommend.objective=revenue"], "recommend.objective"),
        (["recommend.value.tenure_months.nope=3"], "recommend.value.tenure_months.nope: unknown"),
        (["recommend.eligibility.exclude.XX=[free]"], "recommend.eligibility.exclude.XX: unknown"),
        (["recommend.eligibility.exclude.JP=[premium_duo]"], "'premium_duo' is not sold in JP"),
        (["recommend.experiment.markets.XX=0.1"], "recommend.experiment.markets.XX: unknown"),
        (["simulate.position_bias=[0.5, 0.9]"], "simulate.position_bias: Value error, must not"),
        (["simulate.reach=1.5"], "simulate.reach"),
        (["analyze.guardrails.churn=0.01"], "unknown guardrails ['churn']"),
        (["analyze.success_metric=clicks"], "analyze.success_metric"),
        (["analyze.reference_offer=premium_mini"], "'premium_mini' is not sold in"),
        (["interactions.max_values.nope=5"], "max_values: unknown event types ['nope']"),
        (["interactions.behaviour_tokens=[a, a]"], "behaviour_tokens: Value error, listed more"),
        (["train.ks=[1, 3, 3]"], "train.ks: Value error, listed more than once: [3]"),
        (["interactions.behaviour_tokens=[free]"], "['free'] are offer ids of the market"),
        (
            ["interactions.behaviour_tokens=[genre:*, premium*]"],
            "the pattern 'premium*' matches offer ids of the market catalogue ['premium_duo', ",
        ),
        (["interactions.behaviour_tokens=['*']"], "'*' alone would match every item"),
        (["interactions.behaviour_tokens=['*:tv']"], "'*' may only end an entry"),
        (
            ["train.models.ladder.signals.signal:*=[free]"],
            "signals.signal:*: a signal names one behaviour token, not a pattern",
        ),
        (["recommend.reason_tokens=[sex:*]"], "reason_tokens: ['sex:*'] are not behaviour"),
        (["train.models.ladder.signals.usage:tv=[free]"], "signals.usage:tv: unknown behaviour"),
        (["ingest.users=u.csv"], "ingest: Value error, set both events and users"),
        (["recommend.reason_tokens=[sex:m]"], "reason_tokens: ['sex:m'] are not behaviour"),
        (["train.models.ladder.steps={}"], "the ladder is enabled but has no steps"),
        (["ingest.format=json"], "ingest.format: Input should be 'csv', 'parquet' or 'auto'"),
        (["train.candidate=bert4rec"], "candidate 'bert4rec' is not an enabled family"),
        (
            ["train.candidate=conversion", "train.models.conversion.enabled=false"],
            "candidate 'conversion' is not an enabled family",
        ),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(LOCAL_CONF, overrides)
    assert message in str(err.value)


def test_unknown_key_in_a_file_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"extends: {LOCAL_CONF}\nworld:\n  seed: 1\n  colour: blue\n")
    with pytest.raises(ConfigError, match=r"world\.colour: unknown key"):
        load_config(path)


def test_missing_file_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def _markets_copy(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((ROOT / "conf" / "markets.yaml").read_text(encoding="utf-8"))
    edit(raw)
    (tmp_path / "markets.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"extends: {LOCAL_CONF}\nmarkets_file: markets.yaml\n")
    return conf


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m["markets"]["JP"]["offers"].update(premium_individual=1080.5),
            "markets.JP: Value error, offers.premium_individual: price 1080.5 has more "
            "decimals than JPY allows (0)",
        ),
        (lambda m: m["markets"]["SE"].update(currency="SEX"), "currency 'SEX' is not an ISO"),
        (lambda m: m["markets"]["SE"].update(locale="xx_QQ"), "locale 'xx_QQ'"),
        (lambda m: m["markets"]["SE"].update(user_share=0.5), "user_share must sum to 1"),
        (
            lambda m: m["markets"]["NG"]["offers"].update(premium_student=900),
            "markets.NG.offers.premium_student: needs student verification",
        ),
        (lambda m: m["offer_types"]["premium_family"]["names"].pop("ja"), "no name in 'ja'"),
    ],
)
def test_bad_market_catalogue_names_the_problem(tmp_path, edit, message):
    with pytest.raises(ConfigError) as err:
        load_config(_markets_copy(tmp_path, edit))
    assert message in str(err.value)


def test_cli_reports_bad_config_without_a_stack_trace(capsys):
    assert main(["generate-world", "--conf", str(LOCAL_CONF), "--set", "world.users=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recsys: error: invalid configuration")
    assert "world.users" in err
    assert "Traceback" not in err


def test_rollback_needs_a_date(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["rollback", "--to", "2026-13-01"])
    assert exit_.value.code == 2
    assert "not a date (YYYY-MM-DD): '2026-13-01'" in capsys.readouterr().err


def test_own_event_types_and_tokens():
    default = load_config(LOCAL_CONF).interactions
    assert default.event_types == EVENT_TYPES
    assert default.behaviour_tokens == list(BEHAVIOUR_TOKENS)
    own = load_config(
        LOCAL_CONF,
        [
            "interactions.behaviour_events=[addon_usage]",
            "interactions.weights.addon_usage=2",
            "interactions.max_values.addon_usage=10",
            "interactions.behaviour_tokens=[usage:tv, signal:household, signal:student, "
            "signal:audiobook]",
        ],
    ).interactions
    assert own.event_types == (*EVENT_TYPES, "addon_usage")
    assert own.behaviour_tokens[0] == "usage:tv"


def test_behaviour_tokens_may_be_prefix_patterns():
    """A pattern stands for every token with its prefix: the ladder's signals and the reason
    tokens it matches are known, and reason tokens may be patterns too."""
    config = load_config(
        LOCAL_CONF,
        [
            "interactions.behaviour_tokens=[genre:*, signal:*, usage:tv]",
            "recommend.reason_tokens=[signal:*, genre:pop, usage:*]",
        ],
    )
    assert config.interactions.behaviour_tokens == ["genre:*", "signal:*", "usage:tv"]
    assert set(config.train.models.ladder.signals) == {
        "signal:household",
        "signal:student",
        "signal:audiobook",
    }
    assert config.recommend.reason_tokens == ["signal:*", "genre:pop", "usage:*"]


def test_a_weight_for_an_undeclared_event_type_fails():
    # A typo would otherwise leave `listen` unweighted, silently out of the matrix.
    with pytest.raises(ConfigError, match=r"weights: unknown event types \['lisen'\]"):
        load_config(LOCAL_CONF, ["interactions.weights.lisen=0.3"])
    with pytest.raises(ConfigError, match=r"behaviour_events: \['listen'\] are built-in"):
        load_config(LOCAL_CONF, ["interactions.behaviour_events=[listen]"])
    with pytest.raises(ConfigError, match=r"value_events: unknown event types \['colisten'\]"):
        load_config(LOCAL_CONF, ["train.models.conversion.value_events=[colisten]"])


def test_ingest_flags_win_over_the_config_and_paths_are_absolute(tmp_path):
    config = load_config(LOCAL_CONF, ["ingest.users=a.csv", "ingest.events=b.csv"])
    assert config.ingest.users == str(Path("a.csv").resolve())
    assert config.ingest.is_set
    flagged = with_ingest(config, events="s3a://bucket/events/*.parquet", fmt="parquet")
    assert flagged.ingest.users == str(Path("a.csv").resolve())
    assert flagged.ingest.events == "s3a://bucket/events/*.parquet"
    assert flagged.ingest.format == "parquet"
    assert not load_config(LOCAL_CONF).ingest.is_set
    with pytest.raises(ConfigError, match="ingest: Value error, set both events and users"):
        with_ingest(load_config(LOCAL_CONF), events="e.csv")


class _Clock(dt.datetime):
    """A datetime whose now() is the instant the test sets: the clock load_config reads."""

    instant = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=dt.UTC)

    @classmethod
    def now(cls, tz=None):
        return cls.instant.astimezone(tz)


def test_a_null_snapshot_date_is_resolved_once_when_the_config_loads(monkeypatch):
    """load_config turns a null snapshot_date into that day (UTC); every later read of the
    loaded config, by any step, sees that day even once the clock has passed midnight."""
    monkeypatch.setattr(loading, "dt", SimpleNamespace(datetime=_Clock, UTC=dt.UTC))
    config = load_config(LOCAL_CONF, ["interactions.snapshot_date=null"])
    assert config.interactions.snapshot_date == dt.date(2026, 11, 30)

    monkeypatch.setattr(_Clock, "instant", dt.datetime(2026, 12, 1, 0, 0, 1, tzinfo=dt.UTC))
    assert config.interactions.snapshot_date == dt.date(2026, 11, 30)
    assert with_ingest(config).interactions.snapshot_date == dt.date(2026, 11, 30)
    assert settings_of(config)["interactions.snapshot_date"] == "2026-11-30"  # --resume's record
    # A run that starts now gets the new day; a given date is kept as it is.
    later = load_config(LOCAL_CONF, ["interactions.snapshot_date=null"])
    assert later.interactions.snapshot_date == dt.date(2026, 12, 1)
    assert load_config(LOCAL_CONF).interactions.snapshot_date == dt.date(2026, 11, 1)
