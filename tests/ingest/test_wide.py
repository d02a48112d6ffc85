"""`recsys convert wide`: a customer x product table as users and events, its refusals, and,
on a generated table whose structure is known, a conversion model that learns what
popularity cannot."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from recsys import cli
from recsys.config import load_config
from recsys.errors import ConfigError
from recsys.ingest import job as ingest_job
from recsys.ingest import wide
from recsys.interactions import job as interactions_job
from recsys.recommend import job as recommend_job
from recsys.training import job as train_job
from recsys.vocabulary import HOLDOUT, VALIDATION

SNAPSHOT, HOLDOUT_DAYS = dt.date(2026, 11, 1), 28
PRODUCTS = ("travel", "pet", "car", "home", "life")
# P(holds the product) by age band: each band has its own favourites, and none of them is the
# most held product over all customers (car), which is what popularity ranks first.
HOLDS = {
    "young": {"travel": 0.85, "pet": 0.55, "car": 0.35, "home": 0.05, "life": 0.05},
    "middle": {"travel": 0.15, "pet": 0.25, "car": 0.75, "home": 0.55, "life": 0.25},
    "senior": {"travel": 0.05, "pet": 0.10, "car": 0.45, "home": 0.55, "life": 0.85},
}
BANDS = {"young": (18, 34), "middle": (35, 54), "senior": (55, 80)}
SPEC = {
    "id_column": "customer",
    "market_column": "country",
    "products": {f"has_{p}": p for p in PRODUCTS},
    "profile": {
        "age": {"bins": {0: "age:young", 35: "age:middle", 55: "age:senior"}},
        "area": {},
    },
}


# A minimal own-data catalogue: each market's currency, locale and offers, without the free
# plan and, in GB, without prices. The products are add-ons without requires_plans: customers
# on no plan (free) hold them.
MARKETS = {
    "offer_types": {p: {"kind": "addon"} for p in PRODUCTS},
    "markets": {
        "GB": {"currency": "GBP", "locale": "en_GB", "offers": list(PRODUCTS)},
        "IE": {"currency": "EUR", "locale": "en_IE", "offers": dict.fromkeys(PRODUCTS, 10)},
    },
}


def customers(n: int, seed: int = 0) -> pd.DataFrame:
    """A wide table of ``n`` insurance customers with a known structure: which products a
    customer holds depends on the age band alone (:data:`HOLDS`); country and area are noise.
    Every customer holds at least two products, so each has a held-out one and a validation
    one."""
    rng = np.random.default_rng(seed)
    band = rng.choice(list(BANDS), size=n, p=[0.35, 0.40, 0.25])
    rows = []
    for i, b in enumerate(band):
        low, high = BANDS[b]
        held = [p for p in PRODUCTS if rng.random() < HOLDS[b][p]]
        while len(held) < 2:  # top up from the band's favourites
            held = sorted(set(held) | {max(set(PRODUCTS) - set(held), key=HOLDS[b].get)})
        rows.append(
            {
                "customer": f"cust-{i:05d}",
                "country": "GB" if rng.random() < 0.6 else "IE",
                "age": str(int(rng.integers(low, high + 1))),
                "area": rng.choice(["City centre", "Rural"]),
                **{f"has_{p}": str(int(p in held)) for p in PRODUCTS},
            }
        )
    return pd.DataFrame(rows)


def convert(table: pd.DataFrame, **changes) -> wide.Converted:
    spec = wide.WideSpec.model_validate({**SPEC, **changes})
    return wide.convert(table, spec, snapshot=SNAPSHOT, holdout_days=HOLDOUT_DAYS)


def test_products_become_conversions_and_profile_cells_become_tokens():
    table = customers(50)
    converted = convert(table)
    first = table.iloc[0]
    events = converted.events[converted.events["user_id"] == first["customer"]]
    held = {p for p in PRODUCTS if first[f"has_{p}"] == "1"}
    assert set(events.loc[events["event_type"] == "conversion", "item_id"]) == held
    band = next(b for b, (low, high) in BANDS.items() if low <= int(first["age"]) <= high)
    area = "area:city_centre" if first["area"] == "City centre" else "area:rural"
    assert set(events.loc[events["event_type"] == wide.PROFILE, "item_id"]) == {
        f"age:{band}",
        area,
    }
    users = converted.users.set_index("user_id")
    assert users.loc[first["customer"], "current_plan"] == "free"  # no plan column
    assert users.loc[first["customer"], "active_addons"] == ";".join(sorted(held))
    assert set(converted.events["market"]) == set(table["country"])
    assert converted.tokens() == [
        "age:middle",
        "age:senior",
        "age:young",
        "area:city_centre",
        "area:rural",
    ]
    # One held product per customer in the holdout window, one more in the validation window.
    roles = converted.events.groupby("role")["user_id"].nunique()
    assert roles[HOLDOUT] == roles[VALIDATION] == len(table)


@pytest.mark.parametrize(
    ("change", "column", "message"),
    [
        ({"has_car": "maybe"}, "has_car", "unexpected values ['maybe']"),
        ({"age": "-3"}, "age", "expected a number, 0 or more"),
        ({"age": "old"}, "age", "expected a number, 0 or more"),
    ],
)
def test_a_cell_the_spec_does_not_allow_is_refused_naming_column_and_customer(
    change, column, message
):
    table = customers(20)
    table.loc[3, list(change)] = list(change.values())
    with pytest.raises(wide.WideError, match=column) as caught:
        convert(table)
    assert message in str(caught.value)
    assert "cust-00003" in str(caught.value)


def test_repeated_ids_and_contradictory_specs_are_refused(tmp_path):
    table = customers(5)
    table.loc[4, "customer"] = table.loc[0, "customer"]
    with pytest.raises(wide.WideError, match="customer: must be non-empty and unique"):
        convert(table)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "market": "GB"}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"set market .* or market_column, not both"):
        wide.load_spec(path)
    with pytest.raises(wide.WideError, match=r"lacks columns \['has_boat'\]"):
        csv = tmp_path / "table.csv"
        table.to_csv(csv, index=False)
        wide.read_table(csv, wide.WideSpec.model_validate({**SPEC, "products": {"has_boat": "b"}}))


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    """A folder with the generated table, its spec, a markets file and a config whose
    ingest.users / ingest.events are where `convert wide` writes."""
    folder = tmp_path_factory.mktemp("wide")
    customers(2_000).to_csv(folder / "customers.csv", index=False)
    (folder / "spec.yaml").write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    (folder / "markets.yaml").write_text(yaml.safe_dump(MARKETS), encoding="utf-8")
    return folder


def own_config(folder: Path, config, tokens: list[str]) -> Path:
    """A config for the generated table that, like conf/examples/telco.yaml, extends nothing
    (base.yaml's music catalogue names would not match this one), with its tables in a
    database of the session's catalog."""
    settings = {
        "markets_file": str(folder / "markets.yaml"),
        "spark": {
            "master": "local[2]",
            "shuffle_partitions": 2,
            "driver_memory": "4g",
            "checkpoint_dir": str(folder / "checkpoints"),
        },
        "catalog": {
            "database": "wide_tests",
            "warehouse_dir": config.catalog.warehouse_dir,
            "metastore_dir": config.catalog.metastore_dir,
        },
        "mlflow": {
            "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
            "artifact_location": str(folder / "mlartifacts"),
            "experiment": "wide",
        },
        "ingest": {
            "users": str(folder / "data" / "users.csv"),
            "events": str(folder / "data" / "events.csv"),
        },
        "interactions": {
            "snapshot_date": SNAPSHOT.isoformat(),
            "holdout_days": HOLDOUT_DAYS,
            "half_life_days": None,  # the dates are made up: no decay
            "behaviour_events": [wide.PROFILE],
            "weights": {"conversion": 4, wide.PROFILE: 1},
            "max_values": {wide.PROFILE: 1, "default": 1_000_000},
            "behaviour_tokens": tokens,
        },
        "train": {
            "ks": [1, 3, 5],
            "max_trials": 1,
            "registered_model": "recsys-wide-tests",
            "model_dir": str(folder / "models"),
            "report_dir": str(folder / "reports"),
            "models": {
                "ladder": {"enabled": False},
                "spark_als": {"enabled": False},
                "implicit_als": {"enabled": False},
                "implicit_bpr": {"enabled": False},
            },
        },
        "recommend": {
            "value": {"tenure_months": {"default": 12}},
            "experiment": {"id": "wide"},
            "reason_tokens": [],  # age and area are attributes: never a reason shown
        },
    }
    path = folder / "wide.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def test_convert_wide_writes_the_configs_files_and_names_the_tokens_it_lacks(
    own_data, config, capfd
):
    path = own_config(own_data, config, tokens=["age:young"])
    argv = ["convert", "wide", "--conf", str(path), "--spec", str(own_data / "spec.yaml")]
    assert cli.main([*argv, str(own_data / "customers.csv")]) == 0
    users = pd.read_csv(own_data / "data/users.csv")
    assert len(users) == 2_000
    logged = capfd.readouterr().err
    assert "lacks 4 profile tokens" in logged
    assert "'age:middle', 'age:senior', 'area:city_centre', 'area:rural'" in logged
    assert "add them, or patterns that cover them: ['age:*', 'area:*']" in logged


def test_convert_wide_counts_tokens_a_pattern_matches_as_listed(own_data, config, capfd):
    path = own_config(own_data, config, tokens=["age:*", "area:rural"])
    argv = ["convert", "wide", "--conf", str(path), "--spec", str(own_data / "spec.yaml")]
    assert cli.main([*argv, str(own_data / "customers.csv")]) == 0
    logged = capfd.readouterr().err
    assert "lacks 1 profile tokens the files hold" in logged
    assert "['area:city_centre']; add them, or patterns that cover them: ['area:*']" in logged


def test_an_unwritable_output_is_one_clear_error(own_data, config, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    path = own_config(own_data, config, tokens=["age:young"])
    argv = ["convert", "wide", "--conf", str(path), "--spec", str(own_data / "spec.yaml")]
    out = ["--out", str(blocker / "data"), str(own_data / "customers.csv")]
    assert cli.main([*argv, *out]) == 2
    assert "recsys: error: convert wide: cannot write" in capsys.readouterr().err


@pytest.mark.slow  # about 2 minutes on 2 cores: ingest, build, train with two families, recommend
def test_on_a_wide_table_the_conversion_model_beats_popularity_by_five_points(
    spark, config, own_data
):
    """Leave-one-out on the generated table: popularity ranks the country's most held product
    first for everyone; the conversion model learns each age band's favourites from the
    profile tokens. Its hit rate @1 must be at least 5 points above popularity's."""
    converted = wide.convert(
        wide.read_table(own_data / "customers.csv", wide.load_spec(own_data / "spec.yaml")),
        wide.load_spec(own_data / "spec.yaml"),
        snapshot=SNAPSHOT,
        holdout_days=HOLDOUT_DAYS,
    )
    # One prefix pattern per profile column: every age band and area the table holds.
    assert {t.split(":")[0] for t in converted.tokens()} == {"age", "area"}
    small = load_config(own_config(own_data, config, tokens=["age:*", "area:*"]))
    wide.write(converted, small.ingest.users, small.ingest.events)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {small.catalog.database}")
    try:
        ingest_job.run(spark, small)
        interactions_job.run(spark, small)
        train_job.run(spark, small)
        recommend_job.run(spark, small)
        served = spark.table(small.table("plan_recommendations_current")).where("rank > 0")
        runs = mlflow.search_runs(
            experiment_names=[small.mlflow.experiment],
            filter_string="tags.`recsys.family` != ''",
        )
    finally:
        mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    # From file to published lists on a catalogue of currency, locale and offers alone: the
    # offer's id is its name, and no profile token is a reason.
    rows = served.select(
        "market",
        "offer_id",
        "display_name",
        "reason_code",
        "price_display",
        "p_convert",
        "expected_value",
    ).collect()
    assert {r["market"] for r in rows} == {"GB", "IE"}
    assert all(r["display_name"] == r["offer_id"] for r in rows)
    assert not {r["reason_code"] for r in rows} & set(converted.tokens())
    # GB has no prices: no price is shown, and expected_value is p_convert; IE has them.
    gb = [r for r in rows if r["market"] == "GB"]
    assert all(r["price_display"] is None for r in gb)
    assert all(r["expected_value"] == r["p_convert"] for r in gb)
    assert all(r["price_display"] for r in rows if r["market"] == "IE")
    family_runs = runs[runs["tags.recsys.trial"].isna()].set_index("tags.recsys.family")
    hit = family_runs["metrics.hit_rate_at_1"]
    assert hit["conversion"] >= hit["popularity"] + 0.05, hit.to_dict()
    # The report says by how much, paired, with an interval.
    report = (Path(small.train.report_dir) / f"train-{SNAPSHOT}.md").read_text()
    section = report.split("## conversion against every family")[1]
    row = next(line for line in section.splitlines() if line.startswith("| popularity"))
    difference = float(row.split("|")[2].split("[")[0])
    assert difference == pytest.approx(hit["conversion"] - hit["popularity"], abs=1e-4)
