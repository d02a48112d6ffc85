"""The steps of the flow by name, and `recsys pipeline`: which steps it runs, running them
in one session, and the record that lets ``--resume`` go on from the first unfinished one."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.config import Config
from recsys.progress import step
from recsys.runs import command_session, state_dir

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

Step = Callable[["SparkSession", Config], None]


class _Steps(Mapping[str, Step]):
    """The steps by name, each one's module imported when it is first looked up."""

    def __init__(self, targets: dict[str, str]) -> None:
        self._targets = targets

    def __getitem__(self, name: str) -> Step:
        module, function = self._targets[name].split(":")
        return getattr(import_module(module), function)

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


# The flow, in order (docs/configuration.md).
STEPS: Mapping[str, Step] = _Steps(
    {
        "generate-world": "recsys.world.job:run",
        "ingest": "recsys.ingest.job:run",
        "build-interactions": "recsys.interactions.job:run",
        "train": "recsys.training.job:run",
        "recommend": "recsys.recommend.job:run",
        "simulate": "recsys.world.job:simulate_run",
        "analyze": "recsys.experiment.job:analyze_run",
    }
)
# What `pipeline` runs: the demo on the synthetic world, or (with ingest.events and
# ingest.users set) own data, which stops after recommend: simulate needs the synthetic
# world's hidden truth, and analyze the experiment's outcomes, which real data does not have.
DEMO_FLOW = ("generate-world", "build-interactions", "train", "recommend", "simulate", "analyze")
OWN_DATA_FLOW = ("ingest", "build-interactions", "train", "recommend")
# The tables each step reads most of, which size its shuffle partitions (`spark.shuffle_partitions:
# auto`); generate-world and ingest have none, the world's size sets their partitions.
INPUTS: dict[str, tuple[str, ...]] = {
    "generate-world": (),
    "ingest": (),
    "build-interactions": ("events",),
    "train": ("interactions",),
    "recommend": ("users", "user_state"),
    "simulate": ("plan_recommendations", "users"),
    "analyze": ("experiment_exposures", "experiment_outcomes"),
}


def pipeline_steps(config: Config, until: str | None) -> list[str]:
    """The steps `pipeline` runs: the demo flow, or the own-data flow when the config names
    the files to ingest.

    Parameters
    ----------
    config : Config
        The run's config; ``ingest.users`` and ``ingest.events`` set mean own data.
    until : str or None
        The last step to run, None for the flow's last. generate-world and ingest stand for
        each other; a step the flow does not hold means the flow's last.

    Returns
    -------
    list[str]
        Step names, in the order they run.
    """
    if not config.ingest.is_set:
        flow, first = DEMO_FLOW, "generate-world"
    else:
        flow, first = OWN_DATA_FLOW, "ingest"
        log.info(
            "real data: skipping simulate and analyze (simulate plays the test on the "
            "synthetic world's hidden truth; analyze needs the experiment's real exposures "
            "and outcomes); ingest runs instead of generate-world (ingest.users and "
            "ingest.events are set)"
        )
    until = until or flow[-1]
    if until in ("generate-world", "ingest"):
        until = first
    elif until not in flow:
        until = flow[-1]
    return list(flow[: flow.index(until) + 1])


# Sections that change how a run goes, not what it writes: a resumed pipeline may be given
# more driver memory, another master or another log level than the run it goes on with.
_RUN_ONLY = ("spark", "logging")


def settings_of(config: Config) -> dict[str, Any]:
    """The settings that decide what a pipeline's steps write.

    Parameters
    ----------
    config : Config
        The run's config.

    Returns
    -------
    dict[str, Any]
        Flat ``dotted.key: value`` pairs (JSON values): the config less its Spark and logging
        sections, plus the market catalogue it read under ``markets_catalogue``.
    """
    data = config.model_dump(mode="json", exclude=set(_RUN_ONLY))
    if config.markets is not None:
        data["markets_catalogue"] = config.markets.model_dump(mode="json")
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = value

    walk("", data)
    return flat


def _settings_hash(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pipeline_record(config: Config) -> Path:
    return state_dir(config) / f"pipeline-{config.catalog.database}.json"


def forget_pipeline(config: Config) -> None:
    """Delete the record of the last pipeline run, so that ``--resume`` starts over.

    Parameters
    ----------
    config : Config
        The run's config; its catalog's database names the record.
    """
    _pipeline_record(config).unlink(missing_ok=True)


def run_pipeline(config: Config, steps: list[str], resume: bool, log_file: Path) -> int:
    """Run ``steps`` in order, recording each finished one with the settings' hash.

    Parameters
    ----------
    config : Config
        The run's config.
    steps : list[str]
        Step names, from :func:`pipeline_steps`.
    resume : bool
        Skip the leading steps the last run finished with the same settings (see
        :func:`settings_of`); the log says why when none can be skipped.
    log_file : Path
        The run's log file, which also takes the JVM's output.

    Returns
    -------
    int
        The exit status, 0.
    """
    record_path = _pipeline_record(config)
    settings = settings_of(config)
    digest = _settings_hash(settings)
    done: list[str] = []
    if resume:
        done = _resumable(record_path, settings, digest, steps)
    remaining = [s for s in steps if s not in done]
    if not remaining:
        log.info("pipeline --resume: %s finished already with these settings", ", ".join(steps))
        return 0

    finished = list(done)

    def record(name: str | None = None) -> None:
        if name is not None:
            finished.append(name)
        record_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"settings_hash": digest, "settings": settings, "finished": finished}
        record_path.write_text(json.dumps(state, indent=1, default=str), encoding="utf-8")

    record()  # a run that starts over forgets what the last one finished
    return run_steps(config, remaining, log_file, on_done=record, total=len(steps))


def _resumable(path: Path, settings: dict[str, Any], digest: str, steps: list[str]) -> list[str]:
    """The leading ``steps`` the recorded pipeline run finished with these settings (empty,
    with a log line saying why, when there is nothing to go on from)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.info(
            "pipeline --resume: no record of an earlier run (%s); starting from %s", path, steps[0]
        )
        return []
    if state.get("settings_hash") != digest:
        before = state.get("settings", {})
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        shown = ", ".join(
            f"{k}: {_short(before.get(k))} -> {_short(settings.get(k))}" for k in changed[:5]
        )
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        log.info(
            "pipeline --resume: settings changed since the last run (%s%s); starting over from %s",
            shown or "the record has no settings",
            more,
            steps[0],
        )
        return []
    finished = set(state.get("finished", []))
    done = []
    for name in steps:  # only a finished prefix: a later step's output rests on the earlier
        if name not in finished:
            break
        done.append(name)
    if done:
        log.info("pipeline --resume: %s finished with these settings; going on", ", ".join(done))
    return done


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def run_steps(
    config: Config,
    steps: list[str],
    log_file: Path | None = None,
    *,
    on_done: Callable[[str], None] | None = None,
    total: int | None = None,
) -> int:
    """Run ``steps`` in order in one SparkSession, each with its shuffle partitions sized.

    Parameters
    ----------
    config : Config
        The run's config.
    steps : list[str]
        Names in :data:`STEPS`.
    log_file : Path or None
        The run's log file, which also takes the JVM's output.
    on_done : callable, optional
        Called with each step's name when it finishes.
    total : int, optional
        The steps of the whole pipeline when ``steps`` are its last ones, for the progress
        lines' "step n of total"; default ``len(steps)``.

    Returns
    -------
    int
        The exit status, 0.
    """
    from recsys.session import size_shuffle_partitions

    started = time.perf_counter()
    total = total or len(steps)
    log.info("snapshot %s (interactions.snapshot_date)", config.interactions.snapshot_date)
    with command_session(config, f"recsys {' + '.join(steps)}", log_file) as spark:
        for number, name in enumerate(steps, start=total - len(steps) + 1):
            label = name if total == 1 else f"{name} (step {number} of {total})"
            with step(label):
                size_shuffle_partitions(spark, config, INPUTS[name])
                STEPS[name](spark, config)
            if on_done is not None:
                on_done(name)
    log.info("finished %s in %.1fs", ", ".join(steps), time.perf_counter() - started)
    return 0
