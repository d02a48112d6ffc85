"""Benchmark the pipeline's steps at several sizes; record time, CPU and peak memory.

    .venv/bin/python bench/pipeline.py [--users 100000 1000000] [--steps generate-world ...]

For each size, every step runs as its own `recsys <step>` process (as spark-submit would run
it), in order, on a fresh catalog in a temporary folder. Peak memory is the largest resident
set of the whole process tree (the Python driver plus its JVM, where executors live in local
mode), sampled every 0.2 s from /proc; CPU time is the tree's user+system time, sampled the
same way. Results are written to bench/results/pipeline.json and .md.
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


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        found += [int(c) for c in children]
    return found


def _tree(pid: int) -> set[int]:
    """The process and its descendants, each once (a child is listed under the thread that
    started it, so walking every thread's list must not count a process twice)."""
    pids, queue = set(), [pid]
    while queue:
        current = queue.pop()
        if current in pids:
            continue
        pids.add(current)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            queue += _children(current)
    return pids


def _sample(pid: int) -> tuple[int, int, dict[int, float]]:
    """(anonymous resident bytes, all resident bytes, cpu seconds per pid) of the tree.

    Resident memory also counts file pages a process maps (Spark reads its disk-cached blocks
    through memory maps); anonymous memory is what the process itself allocated.
    """
    anon, rss, cpu = 0, 0, {}
    for p in _tree(pid):
        try:
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{p}/status").read_text().splitlines()
            )
            anon += int(status["RssAnon"].split()[0]) * 1024
            rss += int(status["VmRSS"].split()[0]) * 1024
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[p] = (int(fields[11]) + int(fields[12])) / TICK
        except (FileNotFoundError, ProcessLookupError, IndexError, KeyError):
            continue
    return anon, rss, cpu


STEPS = ("generate-world", "build-interactions")


def run_step(step: str, users: int, conf: Path, folder: Path) -> dict:
    """Run one step as a process; its wall time, CPU time, peak memory and rows."""
    command = [
        str(Path(sys.executable).with_name("recsys")),
        step,
        "--conf",
        str(conf),
        "--set",
        f"world.users={users}",
    ]
    started = time.perf_counter()
    log_path = folder / f"{step}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
        peak_anon, peak_rss, cpu = 0, 0, {}
        while proc.poll() is None:
            anon, rss, seen = _sample(proc.pid)
            peak_anon, peak_rss = max(peak_anon, anon), max(peak_rss, rss)
            cpu.update(seen)
            time.sleep(0.2)
    wall = time.perf_counter() - started
    output = log_path.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{step} failed for {users} users:\n{output[-3000:]}")
    return {
        "step": step,
        "users": users,
        "wall_s": round(wall, 1),
        "cpu_s": round(sum(cpu.values()), 1),
        "peak_anon_gib": round(peak_anon / 2**30, 2),
        "peak_rss_gib": round(peak_rss / 2**30, 2),
        "users_per_s": round(users / wall),
        "rows": _rows(step, output),
        "command": f"recsys {step} --conf <conf extending conf/local.yaml> "
        f"--set world.users={users}",
    }


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def _rows(step: str, output: str) -> dict[str, int]:
    """Rows in and out, as the step logged them."""
    if step == "generate-world":
        found = re.findall(r"(users|events): ([\d,]+) rows", output)
        return {name: _count(n) for name, n in found}
    events = re.search(r"validated ([\d,]+) events: ([\d,]+) quarantined", output)
    nnz = re.findall(r"train [\d,]+ users x \d+ items, nnz ([\d,]+)", output)
    return {
        "events_in": _count(events[1]),
        "quarantined": _count(events[2]),
        "train_nnz": sum(_count(n) for n in nnz),
    }


def run_size(users: int, steps: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="recsys-bench-") as tmp:
        folder = Path(tmp)
        conf = folder / "bench.yaml"
        conf.write_text(
            f"extends: {ROOT / 'conf' / 'local.yaml'}\n"
            f"catalog:\n  warehouse_dir: {tmp}/warehouse\n  metastore_dir: {tmp}/metastore\n"
        )
        results = []
        for step in steps:
            print(f"{step}, {users:,} users ...", flush=True)
            results.append(run_step(step, users, conf, folder))
            print(json.dumps(results[-1]), flush=True)
        return results


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
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    args = parser.parse_args()
    results = [r for users in args.users for r in run_size(users, args.steps)]
    record = {
        "benchmark": "pipeline steps",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "reproduce": ".venv/bin/python bench/pipeline.py --users "
        + " ".join(str(u) for u in args.users),
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Pipeline steps benchmark",
        "",
        f"{record['date']} on {record['machine']['cpus']} CPUs, "
        f"{record['machine']['memory_gib']} GiB ({record['machine']['platform']}).",
        f"Reproduce: `{record['reproduce']}`. Each step is its own process. Memory is the",
        "whole process tree (Python driver + JVM with its local executors), sampled every",
        "0.2 s from /proc: anonymous memory (what the processes allocated) and resident set",
        "(which also counts file pages mapped when Spark reads its disk-cached blocks).",
        "",
        "| step | users | wall s | CPU s | peak anon GiB | peak RSS GiB | users/s | rows |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        rows = ", ".join(f"{k} {v:,}" for k, v in r["rows"].items() if v is not None)
        lines.append(
            f"| {r['step']} | {r['users']:,} | {r['wall_s']} | {r['cpu_s']} | "
            f"{r['peak_anon_gib']} | {r['peak_rss_gib']} | {r['users_per_s']:,} | {rows} |"
        )
    (RESULTS / "pipeline.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
