"""A sweep: the training runs of every combination of some config values, one after another
in one Ray session, each on the roles the run before kept wherever they fit.

    rlaif-ray sweep --config configs/local.yaml --vary 'ppo.algorithm=[ppo, grpo]' \\
                    --vary 'learner.lr=[1e-4, 5e-4]' --sweep-dir runs/sweep

runs 4 runs into runs/sweep/<name>/ (e.g. `algorithm=grpo,lr=0.0005`): each an ordinary run
dir that `rlaif-ray samples`, `train --resume` and TensorBoard read. Why one driver: starting
a run's roles costs ~25 s on 2 cores, longer than a short run's iterations, and consecutive
runs of a sweep mostly want the same roles (driver/warm.py keeps them; a run that wants an
engine built differently, e.g. another model or KV cache, starts that role anew).

Every combination is validated before the first run starts. A run that fails is recorded
with its error and the sweep goes on; sweep.json lists every run's outcome and summary.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from rlaif_ray.config import ConfigError, TrainConfig, load_config
from rlaif_ray.driver.interrupts import stop_if_interrupted
from rlaif_ray.driver.logs import RunLogs
from rlaif_ray.driver.run import check_inputs, train_run
from rlaif_ray.driver.runtime import ray_session
from rlaif_ray.driver.warm import WarmRoles
from rlaif_ray.errors import ActorCodeError, ActorFailed, DataError, RunStopped

log = logging.getLogger("rlaif_ray")

# What stops one run but not the sweep: the run's own failures (its error goes in sweep.json).
RUN_FAILURES = (RunStopped, ActorFailed, ActorCodeError, DataError)


@dataclass
class SweepRun:
    name: str              # e.g. "algorithm=grpo,lr=0.0005": its folder under the sweep dir
    overrides: list[str]   # the --set lines that make it from the base config
    cfg: TrainConfig


def parse_vary(items: list[str]) -> list[tuple[str, list]]:
    """`KEY=[v1, v2, ...]` (the values a YAML list) → [(KEY, values)]."""
    varied = []
    for item in items:
        key, sep, text = item.partition("=")
        try:
            values = yaml.safe_load(text) if sep else None
        except yaml.YAMLError:
            values = None
        if not key.strip() or not isinstance(values, list) or not values:
            raise ConfigError(f"--vary {item!r}: expected KEY=[value, value, ...] (a YAML list)")
        if key.strip() in [k for k, _ in varied]:
            raise ConfigError(f"--vary {key.strip()}: given twice")
        varied.append((key.strip(), values))
    if not varied:
        raise ConfigError("sweep: give at least one --vary KEY=[value, ...]")
    return varied


def plan_sweep(config: str | Path, overrides: list[str], varied: list[tuple[str, list]]) -> list[SweepRun]:
    """Every combination's validated config, in --vary order (the last key changes fastest).
    A combination the schema refuses is named in the error; nothing has started yet."""
    short = [k.rsplit(".", 1)[-1] for k, _ in varied]
    labels = short if len(set(short)) == len(short) else [k for k, _ in varied]
    runs = []
    for values in itertools.product(*(v for _, v in varied)):
        name = ",".join(f"{label}={_text(v)}" for label, v in zip(labels, values))
        sets = [f"{k}={json.dumps(v)}" for (k, _), v in zip(varied, values)]
        try:
            cfg = load_config(config, [*overrides, *sets, f"run.name={json.dumps(name)}"])
        except ConfigError as err:
            raise ConfigError(f"sweep run {name}: {err}") from None
        runs.append(SweepRun(name, sets, cfg))
    for run in runs[1:]:
        if run.cfg.ray != runs[0].cfg.ray:
            raise ConfigError(f"sweep run {run.name}: its ray section differs from {runs[0].name}'s; "
                              "every run of a sweep shares one Ray session")
    return runs


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def sweep_run(runs: list[SweepRun], sweep_dir: str | Path, overwrite: bool = False, progress: bool = True,
              verbose: bool = False) -> list[dict]:
    """Run `runs` in order; returns (and writes to SWEEP_DIR/sweep.json) one record per run:
    name, overrides, run_dir, status ("done" or "failed"), error, summary."""
    sweep_dir = Path(sweep_dir)
    if not overwrite:
        taken = [r.name for r in runs if (sweep_dir / r.name).exists() and any((sweep_dir / r.name).iterdir())]
        if taken:
            raise ConfigError(f"sweep dir {sweep_dir} already holds runs {', '.join(taken)}; pass --overwrite "
                              "to replace them (nothing was changed)")
    logs = RunLogs.under(sweep_dir, verbose)
    check_every_input(runs, logs)
    records, warm = [], WarmRoles()
    with ray_session(runs[0].cfg.ray, logs):
        try:
            for k, run in enumerate(runs, start=1):
                stop_if_interrupted()
                logs.say(f"sweep run {k}/{len(runs)}: {run.name}")
                records.append(_one_run(run, sweep_dir, overwrite, progress, verbose, warm, logs))
                _write(sweep_dir, records)
        finally:
            warm.shutdown()
    return records


def check_every_input(runs: list[SweepRun], logs: RunLogs) -> None:
    """Each distinct models-and-prompts combination checked before Ray starts: a missing model
    or a bad prompt file stops the sweep now, naming the run, not every run in turn."""
    checked = set()
    for run in runs:
        key = (run.cfg.model.model_dump_json(), run.cfg.data.model_dump_json(), run.cfg.reward.model_dump_json())
        if key in checked:
            continue
        checked.add(key)
        try:
            check_inputs(run.cfg, logs)
        except (ConfigError, DataError) as err:
            raise ConfigError(f"sweep run {run.name}: {err}") from None


def _one_run(run: SweepRun, sweep_dir: Path, overwrite: bool, progress: bool, verbose: bool, warm: WarmRoles,
             logs: RunLogs) -> dict:
    record = {"name": run.name, "overrides": run.overrides, "run_dir": str(sweep_dir / run.name)}
    try:
        summary = train_run(run.cfg, sweep_dir / run.name, overwrite=overwrite, progress=progress, verbose=verbose,
                            warm=warm)
    except RUN_FAILURES as err:
        logs.say(f"sweep run {run.name} failed: {err}")
        return {**record, "status": "failed", "error": str(err), "summary": None}
    return {**record, "status": "done", "error": None, "summary": summary}


def _write(sweep_dir: Path, records: list[dict]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "sweep.json").write_text(json.dumps(records, indent=2))


def format_table(records: list[dict]) -> str:
    """One line per run: mean reward of the first and last 3 iterations, final KL, s/iteration."""
    width = max(len(r["name"]) for r in records)
    lines = [f"{'run':<{width}}  {'reward first 3':>14}  {'last 3':>7}  {'KL':>6}  {'s/iter':>6}"]
    for r in records:
        s = r["summary"]
        if s is None:
            lines.append(f"{r['name']:<{width}}  failed: {r['error']}")
        else:
            lines.append(f"{r['name']:<{width}}  {s['reward_first']:>+14.3f}  {s['reward_last']:>+7.3f}  "
                         f"{s['kl_last']:>6.3f}  {s['seconds_per_iteration']:>6.2f}")
    return "\n".join(lines)
