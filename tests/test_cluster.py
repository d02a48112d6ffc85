"""The pipeline on a real Spark standalone cluster: a master and two workers on loopback, the
package shipped to executors from the built wheel, the published table read back afterwards.

Executors run an interpreter that sees the project's dependencies but not its editable
install of ``recsys``, so the run passes only if the shipped package reached them.

The package travels as an archive of the installed wheel (``--archives``), the way pyspark's
docs ship a packed virtualenv, not as ``--py-files``: on a standalone cluster executors put
only ``.zip``/``.egg``/``.jar`` py-files on their path (a ``.whl`` is ignored), and
``--py-files`` puts the package first on the driver's path too, where training's
``log_pyfunc`` needs real files (``recsys/models/pyfunc.py``) and fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyspark
import pytest

from recsys.config import load_config
from tests.conftest import ROOT, console_script, promote_if_needed, write_conf

pytestmark = pytest.mark.slow

USERS = 2_000
MARKETS = 14
WORKERS = 2
PACKAGE = "recsys_pkg"  # the archive's folder in each executor's working directory


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spark_env(**extra: str) -> dict[str, str]:
    # spark-class finds its jars through SPARK_HOME, else through a `python3` on PATH that
    # can import pyspark, which the venv's interpreter is not.
    return {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), **extra}


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return f"--- {path.name} ---\n" + "\n".join(text.splitlines()[-lines:])


# --- the cluster -------------------------------------------------------------------------


@dataclass
class Cluster:
    folder: Path
    master_url: str = ""
    ui_url: str = ""
    processes: list[tuple[subprocess.Popen, Path]] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            # A session of its own: the group is the JVM and every executor it forks.
            process = subprocess.Popen(
                [console_script("spark-class"), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.folder,
                start_new_session=True,
            )
        self.processes.append((process, log))

    def status(self) -> dict:
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as response:
            return json.load(response)

    def logs(self) -> str:
        return "\n".join(_tail(log) for _, log in self.processes)

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [log.stem for p, log in self.processes if p.poll() is not None]
            if dead:
                pytest.fail(f"{', '.join(dead)} exited while starting\n{self.logs()}")
            try:
                alive = self.status()["aliveworkers"]
            except OSError:
                alive = 0
            if alive >= count:
                return
            time.sleep(2)
        pytest.fail(f"no {count} ALIVE workers after {timeout:.0f}s\n{self.logs()}")

    def stop(self) -> None:
        # Workers first, so they are not left retrying a master that is gone.
        for process, _ in reversed(self.processes):
            _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group, SIGKILL if it is still up after 30 s; then SIGKILL
    whatever of the group outlived the JVM (an executor its worker did not take down)."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=30)
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone
        os.killpg(process.pid, sig)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    folder = tmp_path / "cluster"
    folder.mkdir()
    port, ui_port = _free_port(), _free_port()
    running = Cluster(folder, f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}")
    env = _spark_env(
        SPARK_LOG_DIR=str(folder / "logs"),
        # The REST submission server would take the fixed port 6066.
        SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false",
    )
    try:
        running.start(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)),
            ],
            env,
        )
        for n in range(1, WORKERS + 1):
            work = folder / f"worker{n}"
            running.start(
                f"worker{n}",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    running.master_url,
                    *("--host", "127.0.0.1", "--cores", "1", "--memory", "2g"),
                    *("--webui-port", str(_free_port()), "--work-dir", str(work)),
                ],
                {**env, "SPARK_WORKER_DIR": str(work)},
            )
        running.wait_for_workers(WORKERS)
        yield running
    finally:
        running.stop()


# --- the package, as executors get it ----------------------------------------------------


def _build_wheel(folder: Path) -> Path:
    """The project's wheel, built from a copy so no stale build/ of the checkout leaks in."""
    source = folder / "source"
    shutil.copytree(
        ROOT / "recsys", source / "recsys", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = folder / "dist"
    # Build isolation fetches setuptools from the configured index; the venv's is too old.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), source],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("recsys-*.whl")
    return wheel


def _package_archive(wheel: Path, folder: Path) -> Path:
    """The wheel installed into a folder of its own, packed for ``--archives``."""
    target = folder / PACKAGE
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet"),
            *("--no-compile", "--target", str(target), str(wheel)),
        ],
        check=True,
        timeout=300,
    )
    return Path(shutil.make_archive(str(folder / PACKAGE), "gztar", root_dir=target))


def _executor_python(folder: Path) -> tuple[str, str]:
    """(interpreter, PYTHONPATH) that import the dependencies but not the editable recsys.

    Entries on PYTHONPATH are not scanned for ``.pth`` files, so the editable install's
    finder in the venv's site-packages never runs. Checked from ``folder``, since ``python -c``
    would import the checkout's recsys/ from the current directory.
    """
    python, site_packages = sys._base_executable, sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": site_packages}
    deps = subprocess.run([python, "-c", "import pyspark, implicit, pandas"], env=env, cwd=folder)
    assert deps.returncode == 0, f"{python} cannot import the dependencies from {site_packages}"
    own = subprocess.run([python, "-c", "import recsys"], env=env, cwd=folder, capture_output=True)
    assert own.returncode != 0, f"{python} imports recsys without the shipped package"
    return python, site_packages


# --- the test ----------------------------------------------------------------------------


def _submit(cluster: Cluster, folder: Path, package: Path, job: str, *args: str) -> None:
    python, site_packages = _executor_python(folder)  # checked before every run: it is the proof
    log = folder / f"{job}.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [
                console_script("spark-submit"),
                *("--master", cluster.master_url),
                *("--conf", f"spark.pyspark.driver.python={sys.executable}"),
                *("--conf", f"spark.pyspark.python={python}"),
                *("--conf", f"spark.executorEnv.PYTHONPATH={PACKAGE}{os.pathsep}{site_packages}"),
                *("--archives", f"{package}#{PACKAGE}"),
                str(ROOT / "jobs" / f"{job}.py"),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=_spark_env(),
            timeout=900,
        )
    if done.returncode != 0:
        pytest.fail(f"spark-submit {job} failed ({done.returncode})\n{_tail(log, 60)}")


def _sql(conf: Path, folder: Path, query: str) -> list[dict]:
    done = subprocess.run(
        [console_script("recsys"), "sql", query, "--conf", str(conf), "--format", "json"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_pipeline_on_standalone_cluster(tmp_path, cluster):
    package = _package_archive(_build_wheel(tmp_path), tmp_path)
    conf = write_conf(
        tmp_path,
        world={"users": USERS},
        train={
            "max_trials": 1,
            # implicit ALS is the family fitted in Python tasks, one market each.
            "models": {"spark_als": {"enabled": False}, "implicit_bpr": {"enabled": False}},
        },
    )
    k = load_config(conf).recommend.k

    _submit(cluster, tmp_path, package, "pipeline", "--conf", str(conf), "--until", "train")
    promote_if_needed(load_config(conf))
    _submit(cluster, tmp_path, package, "recommend", "--conf", str(conf))

    # Both applications ran on the workers: the master lists them, and each left executor
    # folders in a worker's work dir.
    apps = [a for a in cluster.status()["completedapps"] if a["name"].startswith("recsys")]
    assert [a["state"] for a in apps] == ["FINISHED", "FINISHED"], apps
    for app in apps:
        executors = list(cluster.folder.glob(f"worker*/{app['id']}/*/stderr"))
        assert executors, f"no executor of {app['id']} ran on a worker"

    # Read back in a separate process: every user has ranks 1..min(k, eligible offers), or
    # one rank-0 row (holdout arm, or nothing eligible); every market serves ranks 1..k.
    [lists] = _sql(
        conf,
        tmp_path,
        f"""
        with eligible as (
            select user_id, count_if(eligible) as offers from eligibility_audit group by user_id
        ), served as (
            select user_id, first(arm) as arm, count(*) as n, min(rank) as lo, max(rank) as hi
            from plan_recommendations_current group by user_id
        ), markets as (
            select market, min(rank) as first, max(rank) as last
            from plan_recommendations_current where rank >= 1 group by market
        )
        select
            count(*) as users,
            count(s.user_id) as served,
            count_if(s.lo >= 1 and s.arm != 'holdout' and s.hi = least({k}, e.offers)
                     and s.n = s.hi) as lists,
            count_if(s.lo = 0 and s.n = 1 and (s.arm = 'holdout' or e.offers = 0)) as no_list,
            count_if(s.n = {k}) as full_lists,
            (select count(*) from markets) as markets,
            (select count_if(first = 1 and last = {k}) from markets) as markets_1_to_k
        from users as u
        left join served as s on s.user_id = u.user_id
        left join eligible as e on e.user_id = u.user_id
        """,
    )
    assert lists["users"] == lists["served"] == USERS
    assert lists["lists"] + lists["no_list"] == USERS, lists
    assert lists["full_lists"] > USERS / 2, lists
    assert lists["markets"] == lists["markets_1_to_k"] == MARKETS, lists
