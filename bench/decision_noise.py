"""How much of a decision-benchmark share is sampling noise between the arms' users.

    .venv/bin/python bench/decision_noise.py /work/bench-decision/seed-42 [...]
        [--out bench/results/decision_noise]

`bench/decision.py` measures the share of the oracle's conversion lift as
(treatment - control) / (oracle - control), each an arm's mean of the simulator's expected
conversion. The arms hold different users, so the share moves with who fell in which arm,
even with no noise in the outcome draws. For each test whose logs a kept benchmark folder
(`bench/decision.py --keep`) still holds, this reads the per-user expected conversions and
reports:

- the share with an approximate 95% interval: the standard error of treatment - control from
  the arms' per-user spread, over the oracle's gap (held fixed);
- the share with each arm measured against its own users' oracle,
  (t / o_t - c / o_c) / (1 - c / o_c), which takes out how much each arm's users could
  convert at all.

A folder keeps the last objective each test id ran with: `plan-offers-2026-11` is round 1's
propensity test, `plan-offers-round-2` round 2's expected_value test.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from decision import RESULTS, _sql, oracle_share

Z = 1.959964


def arms(folder: Path) -> dict[str, dict[str, dict]]:
    """experiment id -> arm -> users, mean and sd of the expected conversion, mean oracle."""
    rows = _sql(
        folder,
        "select o.experiment_id, a.arm, count(*) as n, avg(o.expected_conversion) as mean, "
        "stddev(o.expected_conversion) as sd, avg(o.oracle_conversion) as oracle "
        "from recsys.experiment_outcomes o join (select distinct experiment_id, user_id, arm "
        "from recsys.experiment_exposures) a "
        "on a.user_id = o.user_id and a.experiment_id = o.experiment_id "
        "where a.arm in ('treatment', 'control') group by o.experiment_id, a.arm",
        [],
    )
    found: dict[str, dict[str, dict]] = {}
    for r in rows:
        found.setdefault(r["experiment_id"], {})[r["arm"]] = r
    return found


def shares(t: dict, c: dict) -> dict:
    share, gap = oracle_share(t, c)
    se = math.sqrt(t["sd"] ** 2 / t["n"] + c["sd"] ** 2 / c["n"]) / gap
    own_t, own_c = t["mean"] / t["oracle"], c["mean"] / c["oracle"]
    return {
        "users": {"treatment": t["n"], "control": c["n"]},
        "share": share,
        "low": share - Z * se,
        "high": share + Z * se,
        "share_own_oracle": (own_t - own_c) / (1 - own_c),
        "oracle": {"treatment": t["oracle"], "control": c["oracle"]},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=RESULTS / "decision_noise")
    args = parser.parse_args(argv)
    results = {}
    lines = [
        "# Decision benchmark: sampling noise of the share",
        "",
        f"Command: `bench/decision_noise.py {' '.join(str(f) for f in args.folders)}`",
        "",
        "| folder | test | users (T / C) | share of the oracle's conversion lift (95% CI) "
        "| share, each arm against its own oracle | oracle, T / C |",
        "|---|---|---|---|---:|---|",
    ]
    for folder in args.folders:
        for experiment, by_arm in sorted(arms(folder).items()):
            s = shares(by_arm["treatment"], by_arm["control"])
            results[f"{folder.name}/{experiment}"] = s
            lines.append(
                f"| {folder.name} | {experiment} | {s['users']['treatment']:,} / "
                f"{s['users']['control']:,} | {100 * s['share']:.1f}% "
                f"[{100 * s['low']:.1f}%, {100 * s['high']:.1f}%] | "
                f"{100 * s['share_own_oracle']:.1f}% | {100 * s['oracle']['treatment']:.2f}% / "
                f"{100 * s['oracle']['control']:.2f}% |"
            )
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(args.out.with_suffix(".md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
