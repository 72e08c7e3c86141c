"""Saving and restoring a run's full state (learners + driver) through checkpoint folders."""

from __future__ import annotations

from pathlib import Path

from rlaif_ray import checkpoint as ckpt
from rlaif_ray.driver.pools import get_with_timeout
from rlaif_ray.driver.train import RunState
from rlaif_ray.run_dir import read_metrics, rewrite_jsonl, rewrite_metrics


def save_checkpoint(run: RunState, run_dir: Path) -> Path:
    """Every learner rank writes its DeepSpeed state into a staging folder; the driver's
    state goes in last and the folder is renamed into place."""
    staging = ckpt.staging_dir(run_dir, run.iteration)
    refs = [l.save_checkpoint.remote(str(staging), run.cfg.model.policy) for l in run.roles.learners.actors]
    get_with_timeout(refs, run.cfg.run.call_timeout_s, "learner", "checkpoint save")
    state = {
        "iteration": run.iteration,
        "policy_version": run.policy_version,
        "data": run.stream.state_dict(),
        "kl_controller": run.kl.state_dict(),
        "redone_prompts": run.redone_prompts,
        "seed": run.cfg.run.seed,
    }
    return ckpt.commit(staging, state, run.cfg.run.keep_checkpoints)


def should_checkpoint(run: RunState) -> bool:
    every = run.cfg.run.checkpoint_every
    return run.iteration == run.cfg.run.iterations or bool(every and run.iteration % every == 0)


def restore(run: RunState, run_dir: Path) -> Path:
    """Load the latest checkpoint into the learners and the driver, then bring every rollout
    engine to the restored weights before the first generation."""
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        raise FileNotFoundError(f"--resume {run_dir}: no complete checkpoint in {ckpt.checkpoint_root(run_dir)}")
    state = ckpt.read_state(latest)
    refs = [l.load_checkpoint.remote(str(latest)) for l in run.roles.learners.actors]
    get_with_timeout(refs, run.cfg.run.call_timeout_s, "learner", "checkpoint load")
    run.iteration, run.policy_version = state["iteration"], state["policy_version"]
    run.stream.load_state_dict(state["data"])
    run.kl.load_state_dict(state["kl_controller"])
    run.redone_prompts = state.get("redone_prompts", 0)
    run.sync.push(run.roles.learners.actors, run.roles.rollout.actors, run.roles.rollout.names(), run.policy_version)
    # Rows logged after the checkpoint belong to iterations that will run again.
    rows = read_metrics(run_dir)
    rewrite_metrics(run_dir, [r for r in rows if r["iteration"] <= run.iteration],
                    discarded=[r for r in rows if r["iteration"] > run.iteration])
    for name in ("prompts.jsonl", "samples.jsonl"):
        rewrite_jsonl(run_dir / name, lambda r: r["iteration"] <= run.iteration)
    return latest
