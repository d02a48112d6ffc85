"""Benchmark the pipeline's steps at several sizes; record time, CPU and peak memory.

    .venv/bin/python bench/pipeline.py [--users 100000 1000000] [--steps generate-world ...]
        [--set KEY=VALUE ...] [--out bench/results/pipeline]

For each size, every step runs as its own `recsys <step>` process (as spark-submit would run
it), in order, on a fresh catalog and MLflow store in a temporary folder. Peak memory is the
largest resident set of the whole process tree (the Python driver plus its JVM, where
executors live in local mode), sampled every 0.2 s from /proc; CPU time is the tree's
user+system time, sampled the same way. Rows in and out are counted in the tables afterwards.
Results are written to bench/results/pipeline.json and .md (or --out).

A run stopped with SIGTERM or Ctrl-C records the step it was in as an interrupted part (its
time, memory and the stages it finished) before it stops. Resumed in its kept folder
(``--keep``), the step runs again as its next part: with ``--set train.resume=true``, train
reads back the model families its interrupted part finished. A step's parts add up in the
totals.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
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


def _fields(path: Path) -> dict[str, str]:
    """A /proc file of `Name: value` lines (status, meminfo) as a dict."""
    return dict(line.split(":", 1) for line in path.read_text().splitlines())


# kcmp(2), which tells whether two processes share one address space.
_KCMP = {"x86_64": 312, "aarch64": 272}.get(platform.machine())
_KCMP_VM = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _shares_memory(child: int, parent: int) -> bool:
    """Whether ``child`` runs in ``parent``'s address space: the JVM starts commands (Hadoop
    runs `chmod` on local files) through jspawnhelper with posix_spawn, whose child lives in
    the JVM's memory until it execs, and /proc reports the JVM's whole resident set for it
    meanwhile (seen here as a 466 MB `Thread-3` child of a 466 MB JVM)."""
    if _KCMP is not None:
        return _libc.syscall(_KCMP, child, parent, _KCMP_VM, 0, 0) == 0
    mine, theirs = (_fields(Path(f"/proc/{p}/status")) for p in (child, parent))
    return all(mine.get(k) == theirs.get(k) for k in ("VmSize", "RssAnon"))


def _sample(pid: int) -> tuple[int, int, dict[int, float]]:
    """(anonymous resident bytes, all resident bytes, cpu seconds per pid) of the tree.

    Resident memory also counts file pages a process maps (Spark reads its disk-cached blocks
    through memory maps); anonymous memory is what the process itself allocated. A child in
    its parent's address space is counted once (see :func:`_shares_memory`); its memory is
    read only after that check, so a child that execs meanwhile counts its own.
    """
    anon, rss, cpu = 0, 0, {}
    tree = _tree(pid)
    for p in tree:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[p] = (int(fields[11]) + int(fields[12])) / TICK
            parent = int(fields[1])
            if parent in tree and _shares_memory(p, parent):
                continue
            status = _fields(Path(f"/proc/{p}/status"))
            anon += int(status["RssAnon"].split()[0]) * 1024
            rss += int(status["VmRSS"].split()[0]) * 1024
        except (FileNotFoundError, ProcessLookupError, IndexError, KeyError):
            continue
    return anon, rss, cpu


def _machine_used() -> int:
    """Bytes in use on the whole machine (MemTotal - MemAvailable): what the run needed of
    this machine's memory, other processes included."""
    info = _fields(Path("/proc/meminfo"))
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) * 1024


# Each step, the tables it reads and the tables it writes (rows are counted after the run).
STEPS = {
    "generate-world": ((), ("users", "events", "world_truth")),
    "build-interactions": (("events",), ("interactions", "user_state", "events_quarantine")),
    "train": (("interactions",), ()),
    "recommend": (("users", "user_state"), ("plan_recommendations", "eligibility_audit")),
    "simulate": (("plan_recommendations",), ("experiment_exposures", "experiment_outcomes")),
    "analyze": (
        ("experiment_exposures", "experiment_outcomes"),
        ("experiment_results", "experiment_policy_values"),
    ),
}
# The pipeline the scale targets time: generate, build, train (with its evaluation and gate),
# recommend (with publishing); simulate and analyze are the demo's experiment on top.
PIPELINE = ("generate-world", "build-interactions", "train", "recommend")
DONE = re.compile(r"recsys[.\w]*: (.+): done in ([\d.]+)s")


class Interrupted(Exception):
    """SIGTERM or Ctrl-C during a step: record what it did, then stop."""


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run_step(
    step: str, users: int, conf: Path, folder: Path, overrides: list[str], part: int = 1
) -> dict:
    """Run one step as a process; its wall time, CPU time, peak memory and the wall time of
    each stage it logged. A step that fails is recorded too, with the end of its log; one
    interrupted (:class:`Interrupted`) is killed, with its process tree, and recorded as
    ``interrupted``. ``part`` > 1: the step's next run after interrupted ones."""
    sets = [f"world.users={users}", *overrides]
    command = [str(Path(sys.executable).with_name("recsys")), step, "--conf", str(conf)]
    command += [arg for value in sets for arg in ("--set", value)]
    started = time.perf_counter()
    log_path = folder / (f"{step}.log" if part == 1 else f"{step}.part{part}.log")
    interrupted = None
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
        peak_anon, peak_rss, peak_used, cpu = 0, 0, 0, {}
        try:
            while proc.poll() is None:
                anon, rss, seen = _sample(proc.pid)
                peak_anon, peak_rss = max(peak_anon, anon), max(peak_rss, rss)
                peak_used = max(peak_used, _machine_used())
                cpu.update(seen)
                time.sleep(0.2)
        except (Interrupted, KeyboardInterrupt) as stop:
            interrupted = f"{type(stop).__name__} {stop}".strip()
            for pid in _tree(proc.pid):  # as a lost machine would: no clean shutdown
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - started
    output = log_path.read_text()
    result = {
        "step": step,
        "users": users,
        "wall_s": round(wall, 1),
        "cpu_s": round(sum(cpu.values()), 1),
        "peak_anon_gib": round(peak_anon / 2**30, 2),
        "peak_rss_gib": round(peak_rss / 2**30, 2),
        "peak_machine_used_gib": round(peak_used / 2**30, 2),
        "users_per_s": round(users / wall),
        "stages_s": {name: float(s) for name, s in DONE.findall(output) if name != step},
        "command": f"recsys {step} --conf <conf extending conf/local.yaml> "
        + " ".join(f"--set {value}" for value in sets),
    }
    if part > 1:
        result["part"] = part
    if interrupted:
        result["interrupted"] = f"{interrupted} after {wall:.0f} s; log {log_path.name}"
    elif proc.returncode != 0:
        result["failed"] = f"exit {proc.returncode}: " + output[-3000:]
    return result


def count_rows(steps: list[str], conf: Path, folder: Path) -> dict[str, int]:
    """Rows of every table ``steps`` read or write, counted in one `recsys sql` process."""
    tables = sorted({t for step in steps for t in (*STEPS[step][0], *STEPS[step][1])})
    query = " union all ".join(f"select '{t}' as t, count(*) as n from {t}" for t in tables)
    recsys = str(Path(sys.executable).with_name("recsys"))
    done = subprocess.run(
        [recsys, "sql", query, "--conf", str(conf), "--format", "json"],
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
    )
    return {r["t"]: r["n"] for r in map(json.loads, done.stdout.splitlines())}


def run_size(
    users: int,
    steps: list[str],
    overrides: list[str],
    keep: Path | None = None,
    report=None,
    parts: dict[str, int] | None = None,
) -> list[dict]:
    """Run ``steps`` at one size on a fresh catalog and MLflow store: a temporary folder, or
    ``keep`` (left in place, with every step's log). ``report`` gets the results after each
    step, so a long run that dies leaves what it measured. Stops at the first failed or
    interrupted step. ``parts``: step -> its interrupted parts already recorded."""
    parts = parts or {}
    with contextlib.ExitStack() as stack:
        if keep is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recsys-bench-")))
        else:
            folder = keep
            folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "bench.yaml"
        if not conf.exists():  # else a kept folder resumed: its tables and store go on
            conf.write_text(
                f"extends: {ROOT / 'conf' / 'local.yaml'}\n"
                f"catalog:\n  warehouse_dir: {folder}/warehouse\n"
                f"  metastore_dir: {folder}/metastore\n"
            )
        results = []
        for step in steps:
            print(f"{step}, {users:,} users ...", flush=True)
            part = 1 + parts.get(step, 0)
            results.append(run_step(step, users, conf, folder, overrides, part))
            print(json.dumps(results[-1]), flush=True)
            if "failed" in results[-1]:
                break
            if report is not None:
                report(results)
            if "interrupted" in results[-1]:
                break
        done = [r["step"] for r in results if "failed" not in r and "interrupted" not in r]
        rows = count_rows(done, conf, folder) if done else {}
        for result in results:
            reads, writes = STEPS[result["step"]]
            result["rows_in"] = {t: rows[t] for t in reads if t in rows}
            result["rows_out"] = {t: rows[t] for t in writes if t in rows}
        return results


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(int(meminfo) / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def measured_on(record: dict) -> str:
    """When and on what a record was measured: the first line of every results file."""
    m = record["machine"]
    return f"{record['date']} on {m['cpus']} CPUs, {m['memory_gib']} GiB ({m['platform']})."


def totals(results: list[dict]) -> list[dict]:
    """Per size: wall and CPU seconds of the pipeline (generate .. recommend) and of every
    step run, and their time per user relative to the smallest size's (1.0 = the same)."""
    sizes = sorted({r["users"] for r in results})
    rows = []
    for users in sizes:
        mine = [r for r in results if r["users"] == users]
        pipeline = [r for r in mine if r["step"] in PIPELINE]  # a step's parts add up
        complete = {r["step"] for r in pipeline if "interrupted" not in r} == set(PIPELINE)
        rows.append(
            {
                "users": users,
                "pipeline_wall_s": round(sum(r["wall_s"] for r in pipeline), 1)
                if complete
                else None,
                "all_steps_wall_s": round(sum(r["wall_s"] for r in mine), 1),
                "all_steps_cpu_s": round(sum(r["cpu_s"] for r in mine), 1),
                "peak_anon_gib": max(r["peak_anon_gib"] for r in mine),
            }
        )
    smallest = rows[0]
    for row in rows:
        for key in ("pipeline_wall_s", "all_steps_wall_s"):
            if row[key] is not None and smallest[key]:
                per_user = row[key] / row["users"]
                row[f"{key}_per_user_vs_{smallest['users']}"] = round(
                    per_user / (smallest[key] / smallest["users"]), 3
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override passed to every step, e.g. --set spark.driver_memory=20g",
    )
    parser.add_argument("--out", default=str(RESULTS / "pipeline"), help="results file prefix")
    parser.add_argument(
        "--keep",
        type=Path,
        help="run in this folder and keep it (tables, MLflow store, step logs); with one size "
        "only. A folder kept by an earlier run is resumed: the steps that succeeded there (as "
        "recorded in --out's .json) are carried over, and the others run on its tables",
    )
    args = parser.parse_args()
    if args.keep and len(args.users) > 1:
        parser.error("--keep takes one --users size")
    earlier = _earlier(args.keep, Path(args.out)) if args.keep else None
    carried = [
        r
        for r in (earlier or {}).get("results", [])
        if r["users"] == args.users[0] and "failed" not in r
    ]
    finished = {r["step"] for r in carried if "interrupted" not in r}
    parts = Counter(r["step"] for r in carried if "interrupted" in r)
    if carried:
        print(f"resuming {args.keep}: carrying over {', '.join(map(_label, carried))}")
    reproduce = ".venv/bin/python bench/pipeline.py --users " + " ".join(map(str, args.users))
    if args.steps != list(STEPS):
        reproduce += " --steps " + " ".join(args.steps)
    reproduce += "".join(f" --set {o}" for o in args.overrides)
    if args.out != str(RESULTS / "pipeline"):
        reproduce += f" --out {os.path.relpath(args.out, ROOT)}"
    if args.keep:
        reproduce += f" --keep {args.keep}"
    record = {
        "benchmark": "pipeline steps",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "reproduce": reproduce,
        "results": carried,
    }
    if carried:
        record["resumed"] = record["date"]
        record["date"] = earlier["date"]

    def report(results: list[dict]) -> None:
        write({**record, "results": results, "totals": totals(results)}, Path(args.out))

    signal.signal(signal.SIGTERM, _interrupt)
    for users in args.users:
        done = list(record["results"])
        steps = [s for s in args.steps if s not in finished]
        record["results"] += run_size(
            users,
            steps,
            args.overrides,
            args.keep,
            lambda r, done=done: report(done + r),
            parts,
        )
        report(record["results"])
        if failed := [r for r in record["results"] if "failed" in r]:
            raise SystemExit(f"{failed[0]['step']} failed for {failed[0]['users']:,} users")
        if stopped := [r for r in record["results"][len(done) :] if "interrupted" in r]:
            raise SystemExit(f"{stopped[0]['step']} interrupted: {stopped[0]['interrupted']}")


def _earlier(keep: Path, out: Path) -> dict | None:
    """The results file of an earlier run in the kept folder ``keep``, if there was one."""
    if not (keep / "bench.yaml").exists() or not out.with_suffix(".json").exists():
        return None
    return json.loads(out.with_suffix(".json").read_text())


def _label(result: dict) -> str:
    """A step's name, with its part when it ran in parts: "train (part 1, interrupted)"."""
    if "interrupted" not in result and "part" not in result:
        return result["step"]
    interrupted = ", interrupted" if "interrupted" in result else ""
    return f"{result['step']} (part {result.get('part', 1)}{interrupted})"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{t} {n:,}" for t, n in counts.items()) or "-"


def write(record: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Pipeline steps benchmark",
        "",
        measured_on(record),
        f"Reproduce: `{record['reproduce']}`.",
        *(
            [
                f"Resumed {record['resumed']} in the kept folder (`--keep`): the steps "
                "before it ran earlier in the same folder, on the same tables."
            ]
            if "resumed" in record
            else []
        ),
        *([record["note"]] if "note" in record else []),
        "",
        "Each step is its own `recsys <step>` process, as spark-submit runs it, so every step",
        "pays its own Spark start (15-25 s here). Memory is the whole process tree (Python",
        "driver, JVM with its local executors, Python workers), sampled every 0.2 s from /proc:",
        "anonymous memory (what the processes allocated) and resident set (which also counts",
        "file pages mapped when Spark reads its disk-cached blocks). Machine used is the whole",
        "machine's MemTotal - MemAvailable at its peak, other processes included. Rows are",
        "counted in the tables after the run.",
        "",
        "| step | users | wall s | CPU s | peak anon GiB | peak RSS GiB | machine used GiB "
        "| users/s | rows in | rows out |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in record["results"]:
        lines.append(
            f"| {_label(r)} | {r['users']:,} | {r['wall_s']} | {r['cpu_s']} | "
            f"{r['peak_anon_gib']} | {r['peak_rss_gib']} | {r.get('peak_machine_used_gib', '-')} | "
            f"{r['users_per_s']:,} | "
            f"{_counts(r.get('rows_in', {}))} | {_counts(r.get('rows_out', {}))} |"
        )
    smallest = record["totals"][0]["users"]
    lines += [
        "",
        f"Totals. The pipeline is {', '.join(PIPELINE)} (train includes its evaluation and",
        "gate, recommend its publishing); all steps adds simulate and analyze. Per-user time",
        f"is relative to {smallest:,} users (1.0 = the same seconds per user).",
        "",
        "| users | pipeline wall s | per user vs smallest | all steps wall s | all steps CPU s "
        "| per user vs smallest | peak anon GiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in record["totals"]:
        lines.append(
            f"| {t['users']:,} | {t['pipeline_wall_s'] or 'incomplete'} | "
            f"{t.get(f'pipeline_wall_s_per_user_vs_{smallest}', '-')} | "
            f"{t['all_steps_wall_s']} | {t['all_steps_cpu_s']} | "
            f"{t.get(f'all_steps_wall_s_per_user_vs_{smallest}', '-')} | {t['peak_anon_gib']} |"
        )
    for r in record["results"]:
        if "failed" in r:
            lines += [
                "",
                f"**{r['step']} failed at {r['users']:,} users** ({r['failed'][:200]}...).",
            ]
        if "interrupted" in r:
            lines += [
                "",
                f"{_label(r)} at {r['users']:,} users: {r['interrupted']}. "
                "Run again in its kept folder, it goes on as its next part; the totals add "
                "the parts up.",
            ]
    settings = {
        r["command"].split(" ", 2)[2].replace(f"world.users={r['users']}", "")
        for r in record["results"]
    }
    if len(settings) > 1:
        lines += [
            "",
            "Each step's command (their settings differ):",
            "",
        ]
        commands = dict.fromkeys((r["step"], r["users"], r["command"]) for r in record["results"])
        lines += [f"- {step} at {users:,}: `{command}`" for step, users, command in commands]
    lines += ["", "Stages each step logged (seconds):", ""]
    for r in record["results"]:
        if r["stages_s"]:
            stages = ", ".join(f"{name} {s:g}" for name, s in r["stages_s"].items())
            lines.append(f"- {_label(r)} at {r['users']:,}: {stages}")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
