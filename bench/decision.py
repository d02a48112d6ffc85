"""The decision benchmark: does the served model beat the honest baseline in the simulated test?

    .venv/bin/python bench/decision.py [--users 100000] [--seeds 42 7] [--rounds 1|2]
        [--out bench/results/decision] [--set KEY=VALUE ...] [--render] [--merge OTHER.json]

For each seed, a fresh synthetic world in a temporary folder runs `recsys pipeline` (generate-
world to analyze) with the default `recommend.objective: expected_value`, then `recommend`,
`simulate` and `analyze` again with `objective: propensity`, on the same world and model.

With `--rounds 2` the loop closes: `train` runs again with
`train.models.conversion.experiments` naming round 1's test (the logs of its last objective,
propensity), so the served model also learns from the offers round 1's users looked at,
the exploration slice included. A second test with a new id (arms reshuffled) then serves it,
for both objectives, on the same world and snapshot. Round 2 is also scored on round 1's
holdout users alone: none of their outcomes reached the model, so a share there is not
memory of the users it learned from.

Recorded per seed and objective, from the tables and the MLflow store the run wrote:

- the served model (family, version) and the control's baseline (popularity ranked by
  acceptances before the snapshot);
- the share of the oracle's conversion and revenue lift over control that the treatment
  captured, from the simulator's expected values (`experiment_policy_values`, estimator
  `truth`: no sampling noise in the outcome draws);
- the conversion share with each arm's mean adjusted for its users' oracle conversion, and a
  95% interval (:func:`adjusted_share`): the arms hold different users, and the raw share
  moves with how convertible each arm's users happen to be;
- the A/B test's measured treatment and control rates with 95% intervals, and the decision;
- from train: every family's holdout off-policy value (DR, IPS, SNIPS) and NDCG@3, the
  candidate and whether the gate promoted it.

Results go to bench/results/decision.json and .md (or --out). A seed of a 100,000-user world
takes most of an hour for two rounds, so seeds may run apart: ``--merge OTHER.json`` adds
another run's seeds to the recorded results, each with the command and day it ran.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RECSYS = str(Path(sys.executable).with_name("recsys"))
CONF = str(ROOT / "conf" / "local.yaml")
OBJECTIVES = ("expected_value", "propensity")
FIRST_TEST = "plan-offers-2026-11"  # conf/base.yaml's recommend.experiment.id
SECOND_TEST = "plan-offers-round-2"
Z = 1.959964


def _env() -> dict[str, str]:
    """The recsys processes' environment: this checkout's code before the one the
    interpreter's environment installed, so that a worktree's benchmark runs its own code."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _recsys(folder: Path, *args: str, log: Path) -> float:
    started = time.perf_counter()
    with log.open("a", encoding="utf-8") as out:
        done = subprocess.run(
            [RECSYS, *args],
            cwd=folder,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode:
        raise SystemExit(f"recsys {args[0]} failed ({done.returncode}); see {log}")
    return time.perf_counter() - started


def _sql(folder: Path, query: str, sets: list[str]) -> list[dict]:
    done = subprocess.run(
        [RECSYS, "sql", "--conf", CONF, *sets, query, "--format", "json"],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _experiment(folder: Path, sets: list[str]) -> dict:
    values = {
        (r["policy"], r["metric"], r["estimator"]): r
        for r in _sql(
            folder,
            "select policy, metric, estimator, users, value, low, high "
            "from recsys.experiment_policy_values where market = 'ALL'",
            sets,
        )
    }
    decision = _sql(
        folder,
        "select decision, decision_reason, model_version from recsys.experiment_results "
        "where market = 'ALL' limit 1",
        sets,
    )[0]
    result = {"decision": decision["decision"], "reason": decision["decision_reason"]}
    for metric in ("conversion", "revenue"):
        t, c, o = (
            values[(p, metric, "truth")]["value"] for p in ("treatment", "control", "oracle")
        )
        result[f"{metric}_share_of_oracle_lift"] = (t - c) / (o - c)
        result[f"{metric}_expected"] = {"treatment": t, "control": c, "oracle": o}
        result[f"{metric}_measured"] = {
            arm: {k: values[(arm, metric, "ab_measured")][k] for k in ("value", "low", "high")}
            for arm in ("treatment", "control")
        }
    result["conversion_share_adjusted"] = _adjusted(folder, sets, _experiment_id(sets))
    return result


def _adjusted(folder: Path, sets: list[str], experiment: str, within: str | None = None) -> dict:
    """:func:`adjusted_share` of ``experiment``'s treatment and control users (those of the
    ``within`` query's ``user_id`` column only, if given)."""
    among = f"join ({within}) w on w.user_id = o.user_id " if within else ""
    rows = _sql(
        folder,
        "select a.arm, count(*) as n, avg(o.expected_conversion) as mean, "
        "avg(o.oracle_conversion) as oracle, var_samp(o.expected_conversion) as var_mean, "
        "var_samp(o.oracle_conversion) as var_oracle, "
        "covar_samp(o.expected_conversion, o.oracle_conversion) as cov "
        "from recsys.experiment_outcomes o join (select distinct user_id, arm "
        f"from recsys.experiment_exposures where experiment_id = '{experiment}') a "
        f"on a.user_id = o.user_id {among}"
        f"where o.experiment_id = '{experiment}' and a.arm in ('treatment', 'control') "
        "group by a.arm",
        sets,
    )
    by_arm = {r["arm"]: r for r in rows}
    return adjusted_share(by_arm["treatment"], by_arm["control"])


def adjusted_share(t: dict, c: dict) -> dict:
    """The share of the oracle's conversion lift over control that treatment captured, each
    arm's mean adjusted for how convertible its users are, with a 95% interval.

    Parameters
    ----------
    t, c : dict
        Per arm: users ``n``, the mean expected conversion ``mean`` and oracle conversion
        ``oracle``, their sample variances ``var_mean`` and ``var_oracle`` and covariance
        ``cov``.

    Returns
    -------
    dict
        ``share`` with ``low`` and ``high``, ``raw`` (the unadjusted share of
        :func:`oracle_share`), the arms' ``users`` and mean ``oracle``.

    Notes
    -----
    A user's oracle conversion depends only on the user, not on the arm, so it is a
    covariate fixed before assignment, and it explains most of the spread of the expected
    conversion between users. Each arm's mean is regressed on it within the arm and read at
    the oracle mean of both arms together (Lin, 2013, "Agnostic notes on regression
    adjustments to experimental data"); the interval is the delta method's on
    ``(t - c) / (oracle - c)`` with the oracle mean held fixed, the figure both arms are
    read at.
    """
    oracle = (t["oracle"] * t["n"] + c["oracle"] * c["n"]) / (t["n"] + c["n"])

    def read_at_oracle(arm: dict) -> tuple[float, float]:
        slope = arm["cov"] / arm["var_oracle"] if arm["var_oracle"] > 0 else 0.0
        residual = max(arm["var_mean"] - slope * arm["cov"], 0.0)
        return arm["mean"] - slope * (arm["oracle"] - oracle), residual / arm["n"]

    (treated, var_t), (control, var_c) = read_at_oracle(t), read_at_oracle(c)
    gap = oracle - control
    share = (treated - control) / gap
    se = math.sqrt(var_t / gap**2 + var_c * (oracle - treated) ** 2 / gap**4)
    return {
        "share": share,
        "low": share - Z * se,
        "high": share + Z * se,
        "raw": oracle_share(t, c)[0],
        "users": {"treatment": t["n"], "control": c["n"]},
        "oracle": {"treatment": t["oracle"], "control": c["oracle"]},
    }


def _per_view(folder: Path, sets: list[str], experiment: str) -> dict:
    """Per arm, conversions through the list per user who opened the surface (looked at rank
    1): the A/B's own measure of what train's policy value estimates, with a 95% interval."""
    rows = _sql(
        folder,
        "with reached as (select distinct user_id, arm from recsys.experiment_exposures "
        f"where experiment_id = '{experiment}' and rank = 1 and is_examined) "
        "select r.arm, count(*) as n, sum(case when o.converted_rank is not null then 1 "
        "else 0 end) as taken from reached r join recsys.experiment_outcomes o "
        f"on o.user_id = r.user_id and o.experiment_id = '{experiment}' group by r.arm",
        sets,
    )
    measured = {}
    for r in rows:
        rate = r["taken"] / r["n"]
        half = 1.96 * (rate * (1 - rate) / r["n"]) ** 0.5
        measured[r["arm"]] = {
            "users": r["n"],
            "value": rate,
            "low": rate - half,
            "high": rate + half,
        }
    return measured


def _unseen(folder: Path, sets: list[str]) -> dict:
    """The second test's expected conversions on the users round 1 held out (shown nothing,
    so their outcomes never reached the model): the share of the oracle's lift there."""
    held_out = (
        "select distinct user_id from recsys.experiment_exposures "
        f"where experiment_id = '{FIRST_TEST}' and arm = 'holdout'"
    )
    adjusted = _adjusted(folder, sets, SECOND_TEST, within=held_out)
    return {
        "users": adjusted["users"],
        "conversion_share_of_oracle_lift": adjusted["raw"],
        "conversion_share_adjusted": adjusted,
    }


def oracle_share(t: dict, c: dict) -> tuple[float, float]:
    """(share, oracle gap) of the oracle's lift over control that treatment captured, from
    each arm's users ``n``, mean expected value ``mean`` and mean ``oracle``; the oracle is
    averaged over both arms' users."""
    oracle = (t["oracle"] * t["n"] + c["oracle"] * c["n"]) / (t["n"] + c["n"])
    gap = oracle - c["mean"]
    return (t["mean"] - c["mean"]) / gap, gap


def _train(folder: Path) -> dict:
    """Every family's holdout figures and the gate's verdict, from the MLflow store."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{folder / '.recsys' / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("recsys")
    parent = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`recsys.step` = 'train'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    families = {}
    for run in client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    ):
        m = run.data.metrics
        families[run.data.tags["recsys.family"]] = {
            key: m.get(key)
            for key in (
                "policy_value",
                "policy_value_ci_low",
                "policy_value_ci_high",
                "policy_value_ips",
                "policy_value_snips",
                "policy_value_served",
                "policy_value_served_se",
                "policy_served_coverage",
                "ndcg_at_3",
                "val_policy_value",
            )
        }
    return {
        "candidate": parent.data.tags.get("recsys.candidate"),
        "promoted": parent.data.tags.get("recsys.promoted") == "true",
        "families": families,
    }


def _test(folder: Path, sets: list[str], objective: str, log: Path) -> tuple[dict, float]:
    """recommend, simulate and analyze with ``objective``; the test's figures and seconds."""
    chosen = [*sets, f"--set=recommend.objective={objective}"]
    started = time.perf_counter()
    for step in ("recommend", "simulate", "analyze"):
        _recsys(folder, step, "--conf", CONF, *chosen, log=log)
    figures = _experiment(folder, chosen)
    figures["per_view"] = _per_view(folder, chosen, _experiment_id(sets))
    return figures, time.perf_counter() - started


def _experiment_id(sets: list[str]) -> str:
    prefix = "--set=recommend.experiment.id="
    return next((s.removeprefix(prefix) for s in sets if s.startswith(prefix)), FIRST_TEST)


def run_seed(seed: int, users: int, extra: list[str], keep: Path | None, rounds: int) -> dict:
    folder = keep or Path(tempfile.mkdtemp(prefix=f"recsys-decision-{seed}-"))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "decision.log"
    sets = [f"--set=world.users={users}", f"--set=world.seed={seed}", *extra]
    seconds = {"pipeline": _recsys(folder, "pipeline", "--conf", CONF, *sets, log=log)}
    outcome = {"seed": seed, "users": users, "train": _train(folder), "objectives": {}}
    outcome["objectives"]["expected_value"] = _experiment(folder, sets)
    outcome["objectives"]["expected_value"]["per_view"] = _per_view(folder, sets, FIRST_TEST)
    outcome["objectives"]["propensity"], seconds["propensity"] = _test(
        folder, sets, "propensity", log
    )
    if rounds == 2:
        outcome["round_2"], more = run_round_2(folder, sets)
        seconds.update(more)
    outcome["seconds"] = seconds
    outcome["folder"] = str(folder)
    return outcome


def run_round_2(folder: Path, sets: list[str]) -> tuple[dict, dict]:
    """Round 2 on a folder whose round 1 has run: train again learning from round 1's test,
    then a second test for both objectives; (figures, seconds)."""
    log = folder / "decision.log"
    second = _second(sets)
    seconds = {"round_2_train": _recsys(folder, "train", "--conf", CONF, *second, log=log)}
    outcome = {"train": _train(folder), "objectives": {}}
    for objective in ("propensity", "expected_value"):
        figures, seconds[f"round_2_{objective}"] = _test(folder, second, objective, log)
        if objective == "propensity":
            figures["unseen_users"] = _unseen(folder, second)
        outcome["objectives"][objective] = figures
    return outcome, seconds


def _second(sets: list[str]) -> list[str]:
    """Round 2's settings: train learns from round 1's test, served under a new test id."""
    return [
        *sets,
        f"--set=train.models.conversion.experiments=[{FIRST_TEST}]",
        f"--set=recommend.experiment.id={SECOND_TEST}",
    ]


def adjust_recorded(seed: dict, extra: list[str]) -> None:
    """Add the adjusted conversion shares to a seed recorded without them.

    A kept folder holds each test id's logs of its last objective: round 1's propensity test
    and round 2's expected_value test, read as they are. Round 2's propensity test runs
    again on the same champion; it must reproduce the recorded share. Round 1's
    expected_value test cannot run again (round 2 replaced its champion) and stays without.
    """
    folder = Path(seed["folder"])
    sets = [f"--set=world.users={seed['users']}", f"--set=world.seed={seed['seed']}", *extra]

    def check(recorded: dict, adjusted: dict, what: str) -> dict:
        share = recorded["conversion_share_of_oracle_lift"]
        if not math.isclose(adjusted["raw"], share, rel_tol=1e-6):
            raise SystemExit(
                f"seed {seed['seed']}, {what}: the logs in {folder} give a share of "
                f"{adjusted['raw']:.6f}, the record {share:.6f}"
            )
        return adjusted

    first = seed["objectives"]["propensity"]
    first["conversion_share_adjusted"] = check(
        first, _adjusted(folder, sets, FIRST_TEST), "round 1, propensity"
    )
    if "round_2" not in seed:
        return
    second, objectives = _second(sets), seed["round_2"]["objectives"]
    kept = objectives["expected_value"]
    kept["conversion_share_adjusted"] = check(
        kept, _adjusted(folder, second, SECOND_TEST), "round 2, expected_value"
    )
    again, _ = _test(folder, second, "propensity", folder / "decision.log")
    recorded = objectives["propensity"]
    recorded["conversion_share_adjusted"] = check(
        recorded, again["conversion_share_adjusted"], "round 2, propensity run again"
    )
    recorded["unseen_users"] = _unseen(folder, second)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _adjusted_cell(o: dict) -> str:
    a = o.get("conversion_share_adjusted")
    if a is None:
        return "not recorded"
    return f"{_pct(a['share'])} [{_pct(a['low'])}, {_pct(a['high'])}]"


def _rate(d: dict) -> str:
    return f"{100 * d['value']:.2f}% [{100 * d['low']:.2f}%, {100 * d['high']:.2f}%]"


def _commands(results: dict) -> list[str]:
    """The command (and day) behind the results, or each seed's where runs were merged."""
    if not any("command" in seed for seed in results["seeds"]):
        return [f"Command: `{results['command']}`, run {results['date']}."]
    return [
        "Commands, one run per seed, merged by `--merge`:",
        "",
        *(
            f"- seed {seed['seed']}: `{seed.get('command', results['command'])}`, run "
            f"{seed.get('date', results['date'])}"
            for seed in results["seeds"]
        ),
    ]


def merge(recorded: dict, other: dict) -> dict:
    """``recorded`` with the seeds of ``other`` (another run's results) added or replaced,
    each seed keeping the command and day it ran."""
    if other["users"] != recorded["users"]:
        raise SystemExit(
            f"--merge: that run has {other['users']:,} users per world, the recorded one "
            f"{recorded['users']:,}; shares of different worlds do not go in one table"
        )

    def stamp(run: dict, seed: dict) -> dict:
        return {"command": run["command"], "date": run["date"], **seed}

    seeds = {seed["seed"]: stamp(recorded, seed) for seed in recorded["seeds"]}
    seeds.update({seed["seed"]: stamp(other, seed) for seed in other["seeds"]})
    return {**recorded, "seeds": [seeds[s] for s in sorted(seeds, reverse=True)]}


def write(results: dict, out: Path) -> None:
    out.with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    lines = [
        "# Decision benchmark",
        "",
        *_commands(results),
        "",
        f"Run on {results['machine']}. Each seed is a fresh world of "
        f"{results['users']:,} users; the control arm serves popularity ranked by acceptances "
        "before the snapshot. Shares are of the oracle's lift over control, from the "
        "simulator's expected values. The arms hold different users: `adjusted` reads each "
        "arm's mean at the oracle conversion of both arms' users (a regression on each user's "
        "oracle conversion), with a 95% interval; `raw` compares the arms' means as they fell.",
        "",
        *([results["note"], ""] if results.get("note") else []),
        "| seed | objective | served | conversion share: adjusted (95% CI) | raw "
        "| revenue share (raw) | treatment rate (A/B) | control rate (A/B) | decision |",
        "|---:|---|---|---|---:|---:|---|---|---|",
    ]
    for seed in results["seeds"]:
        served = seed["train"]["candidate"] if seed["train"]["promoted"] else "champion kept"
        for name, o in seed["objectives"].items():
            lines.append(
                f"| {seed['seed']} | {name} | {served} | {_adjusted_cell(o)} | "
                f"{_pct(o['conversion_share_of_oracle_lift'])} | "
                f"{_pct(o['revenue_share_of_oracle_lift'])} | "
                f"{_rate(o['conversion_measured']['treatment'])} | "
                f"{_rate(o['conversion_measured']['control'])} | {o['decision']} |"
            )
    rounds = [seed for seed in results["seeds"] if "round_2" in seed]
    if rounds:
        lines += [
            "",
            "## Round 2: the served model also learns from round 1's test",
            "",
            "| seed | objective | served | conversion share: adjusted (95% CI) | raw "
            "| revenue share (raw) | treatment rate (A/B) | control rate (A/B) | decision "
            "| conversion share on round 1's holdout users: adjusted (95% CI) |",
            "|---:|---|---|---|---:|---:|---|---|---|---|",
        ]
    for seed in rounds:
        second = seed["round_2"]
        served = second["train"]["candidate"] if second["train"]["promoted"] else "champion kept"
        for name, o in second["objectives"].items():
            unseen = o.get("unseen_users")
            lines.append(
                f"| {seed['seed']} | {name} | {served} | {_adjusted_cell(o)} | "
                f"{_pct(o['conversion_share_of_oracle_lift'])} | "
                f"{_pct(o['revenue_share_of_oracle_lift'])} | "
                f"{_rate(o['conversion_measured']['treatment'])} | "
                f"{_rate(o['conversion_measured']['control'])} | {o['decision']} | "
                + (
                    f"{_adjusted_cell(unseen)} (raw "
                    f"{_pct(unseen['conversion_share_of_oracle_lift'])}; "
                    f"{unseen['users']['treatment']:,} / {unseen['users']['control']:,} users)"
                    if unseen
                    else ""
                )
                + " |"
            )
    for seed in results["seeds"]:
        lines += [
            "",
            f"## Train, seed {seed['seed']}: holdout figures per family",
            "",
            "| family | policy value (DR, 95% CI) | IPS | SNIPS | NDCG@3 | validation DR |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for family, f in seed["train"]["families"].items():
            lines.append(
                f"| {family} | {f['policy_value']:.4f} [{f['policy_value_ci_low']:.4f}, "
                f"{f['policy_value_ci_high']:.4f}] | {f['policy_value_ips']:.4f} | "
                f"{f['policy_value_snips']:.4f} | {f['ndcg_at_3']:.4f} | "
                f"{f['val_policy_value']:.4f} |"
            )
        lines.append(
            f"\nCandidate {seed['train']['candidate']}, "
            f"{'promoted' if seed['train']['promoted'] else 'not promoted'}; "
            f"pipeline {seed['seconds']['pipeline']:.0f} s, second objective "
            f"{seed['seconds']['propensity']:.0f} s."
        )
        if "round_2" in seed:
            second = seed["round_2"]["train"]
            lines.append(
                f"Round 2: candidate {second['candidate']}, "
                f"{'promoted' if second['promoted'] else 'not promoted'}; train "
                f"{seed['seconds']['round_2_train']:.0f} s."
            )
    lines += _per_view_lines(results["seeds"])
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _per_view_lines(seeds: list[dict]) -> list[str]:
    """Train's holdout policy value of the served family and of popularity beside the test's
    measured conversions through the list per user who opened the surface."""
    rows = [
        (seed, o["per_view"])
        for seed in seeds
        if "per_view" in (o := seed["objectives"]["propensity"])
    ]
    if not rows:
        return []
    lines = [
        "",
        "## Train's off-policy estimate against the test (objective propensity, round 1)",
        "",
        "Per user who opened the surface: train's policy value (DR on the holdout's logged "
        "impressions: conversions of the top-3 lists, a user taking at most one offer), the "
        "same re-weighted to the plans of every user at the snapshot (`served`, the figure a "
        "test serving everyone measures) and the test's conversions through the list, with "
        "95% intervals.",
        "",
        "| seed | served family: train DR | served | treatment: measured "
        "| popularity: train DR | served | control: measured |",
        "|---:|---|---|---|---|---|---|",
    ]
    for seed, view in rows:
        families = seed["train"]["families"]
        served = families[seed["train"]["candidate"]]

        def dr(f: dict) -> str:
            return (
                f"{f['policy_value']:.4f} [{f['policy_value_ci_low']:.4f}, "
                f"{f['policy_value_ci_high']:.4f}]"
            )

        def reweighted(f: dict) -> str:
            if f.get("policy_value_served") is None:
                return "not recorded"
            value, half = f["policy_value_served"], 1.96 * f["policy_value_served_se"]
            return f"{value:.4f} [{value - half:.4f}, {value + half:.4f}]"

        def measured(arm: dict) -> str:
            return f"{arm['value']:.4f} [{arm['low']:.4f}, {arm['high']:.4f}]"

        popularity = families["popularity"]
        lines.append(
            f"| {seed['seed']} | {dr(served)} | {reweighted(served)} | "
            f"{measured(view['treatment'])} | {dr(popularity)} | {reweighted(popularity)} | "
            f"{measured(view['control'])} |"
        )
    return lines


def _recorded(out: Path, note: str | None = None) -> dict:
    """The results recorded at ``out`` (its .json), with ``note`` in place of theirs if given."""
    recorded = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    if note:
        recorded["note"] = note
    return recorded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    parser.add_argument("--rounds", type=int, choices=(1, 2), default=1)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--keep", type=Path, help="keep each seed's folder under this one")
    parser.add_argument("--out", type=Path, default=RESULTS / "decision")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the .md from the recorded .json"
    )
    parser.add_argument("--note", help="a line the .md shows under its header (how it ran)")
    parser.add_argument(
        "--merge",
        type=Path,
        help="add the seeds of another run's .json to the recorded --out (a seed in both: "
        "that run's), each with its own command and day",
    )
    parser.add_argument(
        "--adjust-recorded",
        action="store_true",
        help="add the adjusted conversion shares to the recorded .json's --seeds from their "
        "kept folders (runs round 2's propensity test again)",
    )
    parser.add_argument(
        "--round-2-on-recorded",
        action="store_true",
        help="run round 2 for --seeds on the folders the recorded .json names (their round 1 "
        "done), and record it there",
    )
    args = parser.parse_args(argv)
    if args.merge:
        other = json.loads(args.merge.read_text(encoding="utf-8"))
        write(merge(_recorded(args.out, args.note), other), args.out)
        return
    if args.render:
        write(_recorded(args.out, args.note), args.out)
        return
    extra = [f"--set={s}" for s in args.sets]
    if args.adjust_recorded:
        recorded = _recorded(args.out, args.note)
        for seed in recorded["seeds"]:
            if seed["seed"] in args.seeds:
                adjust_recorded(seed, extra)
                write(recorded, args.out)
        return
    if args.round_2_on_recorded:
        recorded = _recorded(args.out)
        for seed in recorded["seeds"]:
            if seed["seed"] in args.seeds:
                sets = [f"--set=world.users={seed['users']}", f"--set=world.seed={seed['seed']}"]
                seed["round_2"], more = run_round_2(Path(seed["folder"]), [*sets, *extra])
                seed["seconds"].update(more)
                write(recorded, args.out)
        return
    results = {
        "command": " ".join(["bench/decision.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "users": args.users,
        "seeds": [],
        **({"note": args.note} if args.note else {}),
    }
    for seed in args.seeds:
        keep = args.keep / f"seed-{seed}" if args.keep else None
        results["seeds"].append(run_seed(seed, args.users, extra, keep, args.rounds))
        write(results, args.out)
        print(f"seed {seed} done: {args.out.with_suffix('.md')}", flush=True)


if __name__ == "__main__":
    main()
