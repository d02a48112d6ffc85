"""The readout's views of experiment_results and experiment_policy_values, its charts, and
the decision report it shows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.errors import RecsysError
from recsys.notebooks import experiment_readout as er


def _result(market, metric, role, comparison, adjustment, rel_lift, decision, **extra):
    return {
        "market": market,
        "metric": metric,
        "role": role,
        "unit": "reference_months" if market == "ALL" else "SEK",
        "comparison": comparison,
        "adjustment": adjustment,
        "users_a": 100,
        "users_b": 90,
        "mean_a": 0.11,
        "mean_b": 0.10,
        "lift": 0.01,
        "lift_low": -0.01,
        "lift_high": 0.03,
        "rel_lift": rel_lift,
        "rel_low": rel_lift - 0.05,
        "rel_high": rel_lift + 0.05,
        "p_value": 0.2,
        "p_adjusted": 0.3,
        "margin": None,
        "verdict": None,
        "srm_p_value": 0.5,
        "is_valid": True,
        "decision": decision,
        "decision_reason": f"{decision} because",
        "required_users_per_arm": 1000,
        **extra,
    }


@pytest.fixture
def results() -> pd.DataFrame:
    rows = []
    for market, decision, lift in (("SE", "ship", 0.2), ("ALL", "keep_testing", 0.1)):
        for adjustment in ("raw", "cuped"):
            for metric in ("conversion", "revenue"):
                role = "success" if metric == "revenue" else "secondary"
                rows.append(
                    _result(
                        market, metric, role, "treatment_vs_control", adjustment, lift, decision
                    )
                )
            rows.append(
                _result(
                    market, "revenue", "success", "treatment_vs_holdout", adjustment, 0.9, decision
                )
            )
        rows.append(
            _result(
                market,
                "cancellation",
                "guardrail",
                "treatment_vs_control",
                "cuped",
                0.0,
                decision,
                margin=0.005,
                verdict="non_inferior",
            )
        )
    rows.append(
        _result("BR", "revenue", "success", "treatment_vs_control", "cuped", -0.1, "keep_baseline")
    )
    return pd.DataFrame(rows)


def test_decisions_one_row_per_market_pooled_first_in_words(results):
    table = er.decisions(results, "revenue", "cuped")
    assert list(table["market"]) == ["ALL", "BR", "SE"]
    assert list(table["decision"]) == ["KEEP TESTING", "KEEP THE BASELINE", "SHIP"]
    assert table.loc[0, "decision_reason"] == "keep_testing because"


def test_lifts_of_one_metric_comparison_and_adjustment(results):
    table = er.lifts(results, "conversion", "raw")
    assert list(table["market"]) == ["ALL", "SE"]
    assert list(table["rel_lift"]) == [0.1, 0.2]
    holdout = er.lifts(results, "revenue", "cuped", comparison="treatment_vs_holdout")
    assert list(holdout["rel_lift"]) == [0.9, 0.9]


def test_guardrails_are_the_pooled_treatment_vs_control_rows(results):
    table = er.guardrails(results, "cuped")
    assert list(table["metric"]) == ["cancellation"]
    assert table.loc[0, "margin"] == 0.005
    assert table.loc[0, "verdict"] == "non_inferior"


def test_plot_lifts_draws_each_market_at_its_lift_coloured_by_decision(results):
    figure = er.plot_lifts(results, ["conversion", "revenue"], "cuped")
    conversion, revenue = figure.axes
    labels = [t.get_text() for t in conversion.get_yticklabels()]  # the panels share them
    ticks = dict(zip(conversion.get_yticks(), labels, strict=True))
    assert ticks == {2: "ALL", 1: "BR", 0: "SE"}  # pooled on top
    points = {}
    for line in (line for line in revenue.lines if line.get_marker() == "o"):
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
            points[ticks[y]] = (x, line.get_color())
    assert points["SE"][0] == pytest.approx(20.0)
    assert points["BR"][0] == pytest.approx(-10.0)
    assert points["SE"][1] == "tab:green" and points["BR"][1] == "tab:red"
    assert {t.get_text() for t in revenue.get_legend().get_texts()} == {
        "ship",
        "keep the baseline",
        "keep testing",
    }
    assert "conversion" in conversion.get_title()


def test_plot_policy_values_one_point_per_policy_and_estimator():
    values = pd.DataFrame(
        [
            ("ALL", "treatment", "conversion", "ab_measured", 0.040, 0.035, 0.045),
            ("ALL", "treatment_greedy", "conversion", "ips", 0.030, 0.010, 0.050),
            ("ALL", "oracle", "conversion", "truth", 0.050, 0.049, 0.051),
            ("ALL", "treatment", "revenue", "ab_measured", 0.80, 0.78, 0.82),
        ],
        columns=["market", "policy", "metric", "estimator", "value", "low", "high"],
    )
    conversion, revenue = er.plot_policy_values(values, ["conversion", "revenue"]).axes
    labels = [t.get_text() for t in conversion.get_yticklabels()]
    assert labels == ["oracle · truth", "treatment · ab_measured", "treatment_greedy · ips"]
    assert list(conversion.get_yticks()) == [2, 1, 0]  # the first label on top
    assert np.allclose(sorted(conversion.lines[0].get_xdata()), [3.0, 4.0, 5.0])  # in %
    assert len(revenue.get_yticks()) == 1


def test_decision_report_is_the_file_analyze_wrote(config, tmp_path):
    mine = config.model_copy(
        update={"analyze": config.analyze.model_copy(update={"report_dir": str(tmp_path)})}
    )
    with pytest.raises(RecsysError, match=r"no decision report .*: run analyze"):
        er.decision_report(mine)
    path = tmp_path / f"experiment-{config.recommend.experiment.id}.md"
    path.write_text("# Experiment: SHIP\n", encoding="utf-8")
    assert er.decision_report(mine)._repr_markdown_() == "# Experiment: SHIP\n"
    assert er.adjustment(mine) == ("cuped" if config.analyze.cuped else "raw")
