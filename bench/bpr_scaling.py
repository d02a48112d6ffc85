"""How bare `implicit` BPR's speed per sample changes with a market's number of users.

    .venv/bin/python bench/bpr_scaling.py [--users 200000 2000000] [--rounds 3]

At 10M users, train's BPR refit kept both cores busy for about 50 minutes (14 market tasks,
the largest 1,328 s in one run and 1,437 s in another). BPR draws each sample at random
from the market's non-zeros, so it reads a random user's factors every time: while the
market's user factors fit in the processor's cache, that is cheap; past it, every sample
waits for memory. This fits one thread (as a train task does) on
random matrices shaped like ours (a few offers per user of 40, popular ones likelier;
8 factors, the default) at several user counts, interleaved over rounds, and records the
samples per second of each. Results: bench/results/bpr_scaling.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path

import numpy as np
from pipeline import RESULTS, machine, measured_on  # bench/ is the script's folder
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

ITEMS, PER_USER, FACTORS, ITERATIONS = 40, 6.7, 8, 10


def matrix(users: int, seed: int = 0) -> csr_matrix:
    """``users`` x ITEMS: PER_USER draws per user, popular items likelier; a user's repeated
    draws of one item are one non-zero, so each has fewer distinct items than draws."""
    rng = np.random.default_rng(seed)
    nnz = int(users * PER_USER)
    popularity = rng.zipf(1.3, ITEMS).astype(float)
    rows = rng.integers(0, users, nnz)
    cols = rng.choice(ITEMS, nnz, p=popularity / popularity.sum())
    built = csr_matrix((np.ones(nnz, np.float32), (rows, cols)), shape=(users, ITEMS))
    built.sum_duplicates()
    built.data[:] = 1.0
    return built


def fit_seconds(data: csr_matrix) -> float:
    import implicit

    model = implicit.bpr.BayesianPersonalizedRanking(
        factors=FACTORS, iterations=ITERATIONS, random_state=7, num_threads=1, use_gpu=False
    )
    with threadpool_limits(1, "blas"):
        started = time.perf_counter()
        model.fit(data, show_progress=False)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[200_000, 600_000, 2_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "bpr_scaling"))
    args = parser.parse_args()
    matrices = {users: matrix(users) for users in args.users}
    seconds: dict[int, list[float]] = {users: [] for users in args.users}
    for round_ in range(args.rounds):
        for users in args.users if round_ % 2 == 0 else reversed(args.users):
            seconds[users].append(fit_seconds(matrices[users]))
            print(f"round {round_ + 1}, {users:,} users: {seconds[users][-1]:.1f} s", flush=True)
    rows = []
    for users in args.users:
        nnz = matrices[users].nnz
        median = statistics.median(seconds[users])
        rows.append(
            {
                "users": users,
                "nnz": nnz,
                "user_factor_mib": round(users * (FACTORS + 1) * 4 / 2**20, 1),
                "seconds": [round(s, 2) for s in seconds[users]],
                "median_s": round(median, 2),
                "million_samples_per_s": round(nnz * ITERATIONS / median / 1e6, 2),
            }
        )
    record = {
        "benchmark": "bare implicit BPR, one thread, by users per market",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "reproduce": ".venv/bin/python bench/bpr_scaling.py --users "
        + " ".join(map(str, args.users))
        + f" --rounds {args.rounds}",
        "settings": {"items": ITEMS, "factors": FACTORS, "iterations": ITERATIONS},
        "results": rows,
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    fastest = max(r["million_samples_per_s"] for r in rows)
    lines = [
        "# Bare implicit BPR by users per market",
        "",
        measured_on(record),
        f"Reproduce: `{record['reproduce']}`.",
        "",
        f"One thread; {ITEMS} items, {PER_USER} draws per user, {FACTORS} factors "
        f"(plus implicit's item bias), {ITERATIONS} epochs; each epoch draws one sample per "
        f"non-zero. Sizes interleaved over {args.rounds} rounds; medians.",
        "",
        "| users | non-zeros | per user | user factors MiB | seconds (rounds) | median s "
        "| M samples/s | vs fastest |",
        "|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['users']:,} | {r['nnz']:,} | {r['nnz'] / r['users']:.2f} | "
            f"{r['user_factor_mib']} | "
            f"{', '.join(map(str, r['seconds']))} | {r['median_s']} | "
            f"{r['million_samples_per_s']} | {r['million_samples_per_s'] / fastest:.2f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
