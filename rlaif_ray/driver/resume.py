"""Saving and restoring a run's full state (learners + driver) through checkpoint folders."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rlaif_ray import checkpoint as ckpt
from rlaif_ray.driver.train import RunState
from rlaif_ray.run_dir import read_metrics, rewrite_jsonl, rewrite_metrics

log = logging.getLogger("rlaif_ray")


def save_checkpoint(run: RunState, run_dir: Path) -> Path:
    """Every learner rank writes its DeepSpeed state into a staging folder, the driver the
    batches its pipeline generated ahead; the driver's state and the manifest (sizes,
    sha256, the seconds this took) go in last and the folder is renamed into place."""
    start = time.perf_counter()
    staging = ckpt.staging_dir(run_dir, run.iteration)
    run.roles.learners.call_all("save_checkpoint", str(staging), run.cfg.model.policy)
    run.pipeline.save(staging)  # batches generated ahead (pipeline.max_staleness ≥ 1)
    save_s = time.perf_counter() - start
    final = ckpt.commit(staging, driver_state(run), run.cfg.run.keep_checkpoints, timing={"save_s": round(save_s, 3)})
    run.checkpoint_clock = time.monotonic()
    return final


def driver_state(run: RunState) -> dict:
    """What the driver needs, beside the learners' state, to go on exactly from here."""
    return {
        "iteration": run.iteration,
        "policy_version": run.policy_version,
        "data": run.stream.state_dict(),
        "kl_controller": run.kl.state_dict(),
        "recovery": run.roles.recovery.state_dict(),
        "seed": run.cfg.run.seed,
    }


def should_checkpoint(run: RunState) -> bool:
    """At the last iteration, and every `run.checkpoint_every` iterations or, when that is 0
    (the default), once `run.checkpoint_every_minutes` have passed since this process's last
    checkpoint (or its restore, or for a new run since its run dir was created, i.e. before
    actor start-up)."""
    every, minutes = run.cfg.run.checkpoint_every, run.cfg.run.checkpoint_every_minutes
    if run.iteration == run.cfg.run.iterations:
        return True
    if every:
        return run.iteration % every == 0
    if not minutes:
        return False
    last = run.checkpoint_clock
    if last is None:  # a new run: its clock starts when prepare_run_dir wrote config.yaml
        config_file = Path(run.run_dir or ".") / "config.yaml"
        age = time.time() - config_file.stat().st_mtime if config_file.exists() else 0.0
        last = time.monotonic() - max(age, 0.0)
        run.checkpoint_clock = last
    return time.monotonic() - last >= 60 * minutes


def restore(run: RunState, run_dir: Path, checkpoint: Path | None = None) -> Path:
    """Load `checkpoint` (default: the newest intact one, see checkpoint.choose_resume_checkpoint)
    into the learners and the driver, then bring every rollout engine to the restored weights
    before the first generation. train_run chooses and verifies it before Ray starts."""
    if checkpoint is None:
        checkpoint, warnings = ckpt.choose_resume_checkpoint(run_dir)
        for line in warnings:
            log.warning("%s", line)
    latest = Path(checkpoint)
    state = ckpt.read_state(latest)
    run.roles.learners.call_all("load_checkpoint", str(latest))
    rewind(run, run_dir, state, latest)
    return latest


def rewind(run: RunState, run_dir: Path, state: dict, checkpoint: Path | None = None) -> None:
    """Put the driver back to `state` (a checkpoint's, or the run's start) once the learners
    hold the matching weights: the engines get them, the pipeline drops what it had in
    flight and takes the batches `checkpoint` saved (if any), and the rows logged after
    that point, which belong to iterations that will run again, leave metrics.jsonl (kept aside in
    metrics.discarded.jsonl), prompts.jsonl and samples.jsonl."""
    run.iteration, run.policy_version = state["iteration"], state["policy_version"]
    run.stream.load_state_dict(state["data"])
    run.kl.load_state_dict(state["kl_controller"])
    run.roles.recovery.load_state_dict(state.get("recovery", {}))
    run.sync.push(run.roles.learners, run.roles.rollout, run.policy_version)
    run.pipeline.load(checkpoint)
    rows = read_metrics(run_dir)
    rewrite_metrics(run_dir, [r for r in rows if r["iteration"] <= run.iteration],
                    discarded=[r for r in rows if r["iteration"] > run.iteration])
    for name in ("prompts.jsonl", "samples.jsonl"):
        rewrite_jsonl(run_dir / name, lambda r: r["iteration"] <= run.iteration)
    run.checkpoint_clock = time.monotonic()
