"""Benchmark `recsys generate-world` at several sizes; record time, CPU and peak memory.

    .venv/bin/python bench/generate_world.py [--users 100000 1000000]

Each size runs as its own `recsys generate-world` process with a fresh catalog in a
temporary folder. Peak memory is the largest resident set of the whole process tree (the
Python driver plus its JVM, where executors live in local mode), sampled every 0.2 s from
/proc; CPU time is the tree's user+system time, sampled the same way. Results are written to
bench/results/generate_world.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        found += [int(c) for c in children]
    return found


def _tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            queue += _children(current)
    return pids


def _sample(pid: int) -> tuple[int, dict[int, float]]:
    """(resident bytes of the tree, cpu seconds per pid)."""
    rss, cpu = 0, {}
    for p in _tree(pid):
        try:
            rss += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[p] = (int(fields[11]) + int(fields[12])) / TICK
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return rss, cpu


def run_once(users: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="recsys-bench-") as tmp:
        conf = Path(tmp) / "bench.yaml"
        conf.write_text(
            f"extends: {ROOT / 'conf' / 'local.yaml'}\n"
            f"catalog:\n  warehouse_dir: {tmp}/warehouse\n  metastore_dir: {tmp}/metastore\n"
        )
        command = [
            str(Path(sys.executable).with_name("recsys")),
            "generate-world",
            "--conf",
            str(conf),
            "--set",
            f"world.users={users}",
        ]
        started = time.perf_counter()
        log_path = Path(tmp) / "job.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
            peak, cpu = 0, {}
            while proc.poll() is None:
                rss, seen = _sample(proc.pid)
                peak = max(peak, rss)
                cpu.update(seen)
                time.sleep(0.2)
        wall = time.perf_counter() - started
        output = log_path.read_text()
        if proc.returncode != 0:
            raise SystemExit(f"generate-world failed for {users} users:\n{output[-3000:]}")
    rows = {
        m[0]: int(m[1].replace(",", ""))
        for m in re.findall(r"(users|events): ([\d,]+) rows", output)
    }
    return {
        "users": users,
        "wall_s": round(wall, 1),
        "cpu_s": round(sum(cpu.values()), 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "rows_users": rows.get("users"),
        "rows_events": rows.get("events"),
        "users_per_s": round(users / wall),
        "command": " ".join(
            ["recsys", *command[1:3], "<fresh conf extending conf/local.yaml>", *command[4:]]
        ),
    }


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(int(meminfo) / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    results = []
    for users in args.users:
        print(f"generate-world, {users:,} users ...", flush=True)
        result = run_once(users)
        print(json.dumps(result), flush=True)
        results.append(result)
    record = {
        "benchmark": "generate-world",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "reproduce": f"{Path(sys.executable).name} bench/generate_world.py --users "
        + " ".join(str(u) for u in args.users),
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generate_world.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# generate-world benchmark",
        "",
        f"{record['date']} on {record['machine']['cpus']} CPUs, "
        f"{record['machine']['memory_gib']} GiB ({record['machine']['platform']}).",
        f"Reproduce: `.venv/bin/python bench/generate_world.py --users "
        f"{' '.join(str(u) for u in args.users)}`",
        "",
        "| users | wall s | CPU s | peak RSS GiB | users rows | events rows | users/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['users']:,} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_gib']} | "
            f"{r['rows_users']:,} | {r['rows_events']:,} | {r['users_per_s']:,} |"
        )
    (RESULTS / "generate_world.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
