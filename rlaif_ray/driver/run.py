"""A whole training run: checks, start-up, the iteration loop with progress, the summary."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rlaif_ray.algorithms import make_kl_controller
from rlaif_ray.checkpoint import CheckpointError, choose_resume_checkpoint
from rlaif_ray.config import TrainConfig
from rlaif_ray.data import prompt_stream
from rlaif_ray.driver.interrupts import stop_if_interrupted
from rlaif_ray.driver.logs import RunLogs
from rlaif_ray.driver import chaos
from rlaif_ray.driver.pools import wait_all_ready
from rlaif_ray.driver.resume import driver_state, restore, rewind, save_checkpoint, should_checkpoint
from rlaif_ray.driver.roles import running_roles, start_learners
from rlaif_ray.driver.runtime import ray_session
from rlaif_ray.driver.warm import WarmRoles, require_outer_session
from rlaif_ray.weight_sync.driver import make_weight_sync
from rlaif_ray.driver.train import RunState, run_iteration, serve_start_weights
from rlaif_ray.modeling import load_tokenizer
from rlaif_ray.preflight import check_models
from rlaif_ray.weight_sync.probe import probe_prompt
from rlaif_ray.errors import ActorFailed, RunStopped
from rlaif_ray.run_dir import MetricsWriter, prepare_run_dir, read_metrics

log = logging.getLogger("rlaif_ray")

def train_run(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, overwrite: bool = False,
              progress: bool = True, verbose: bool = False, warm: WarmRoles | None = None) -> dict:
    """Validate everything that can be checked without Ray, then run all iterations.

    Engine and driver output goes to RUN_DIR/logs/ (see driver/logs.py); `verbose` streams
    it to the terminal instead. `warm`: roles kept by earlier runs of this driver, taken where
    they fit, and this run's roles kept in it when it ends well (driver/warm.py; the caller
    shuts it down, inside the same Ray session).
    """
    run_dir = Path(run_dir)
    require_outer_session(warm)
    logs = RunLogs.under(run_dir, verbose)
    tokenizer, stream = check_inputs(cfg, logs)
    prepare_run_dir(run_dir, cfg, resume, overwrite)
    # Before any actor starts: a damaged checkpoint is skipped (one warning line naming the
    # file), and with none intact the run stops here (CheckpointError: one line, exit 2).
    checkpoint, skipped = choose_resume_checkpoint(run_dir) if resume else (None, [])
    for line in skipped:
        log.warning("%s", line)
    with ray_session(cfg.ray, logs):
        with running_roles(cfg, logs=logs, warm=warm) as roles:
            run = RunState(cfg, roles, stream, make_kl_controller(cfg.kl.controller, cfg.kl.coef, cfg.kl.target, cfg.kl.horizon),
                           make_weight_sync(cfg.sync, roles.rollout), probe_prompt(tokenizer), run_dir)
            serve_start_weights(run)
            run.start_state = driver_state(run)
            if resume:
                restored = restore(run, run_dir, checkpoint)
                log.warning("resumed from %s at iteration %d", restored, run.iteration)
            run.chaos = chaos.install(roles, cfg.chaos.faults, lambda: run.running)
            run_iterations(run, run_dir, logs, progress)
    # Over the whole run: a resumed run's metrics.jsonl holds iterations 1..N once each.
    summary = summarize(read_metrics(run_dir))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def check_inputs(cfg: TrainConfig, logs: RunLogs) -> tuple:
    """What a run reads before any actor starts, checked: the models exist, the prompts load
    and fit. Returns the policy tokenizer and the prompt stream."""
    check_models(cfg)
    tokenizer = load_tokenizer(cfg.model.policy, cfg.model.trust_remote_code)
    with logs.quiet_loading():
        stream = prompt_stream(cfg.data, tokenizer, cfg.model.policy, cfg.run.seed)
    return tokenizer, stream


def run_iterations(run: RunState, run_dir: Path, logs: RunLogs, progress: bool) -> None:
    """Every iteration left, each metrics row written as it comes, checkpoints as due. A lost
    learner rebuilds the group from the newest checkpoint and the run goes on from there."""
    cfg = run.cfg
    # After restore: a resumed run's TensorBoard hides the steps it is about to redo.
    writer = MetricsWriter(run_dir, cfg.run.name, first_step=run.iteration + 1)
    bar = tqdm(total=cfg.run.iterations, initial=run.iteration, desc=cfg.run.name, disable=not progress,
               unit="iter", dynamic_ncols=True, file=logs.terminal)
    try:
        while run.iteration < cfg.run.iterations:
            stop_if_interrupted()
            try:
                row = run_iteration(run)
                writer.write(row)
                writer.write_samples(run.iteration, run.samples)
                if should_checkpoint(run):
                    save_checkpoint(run, run_dir)
            except ActorFailed as err:
                if not err.actor.startswith("learner"):
                    raise
                writer.close()
                restart_learners(run, run_dir, err, logs)
                writer = MetricsWriter(run_dir, cfg.run.name, first_step=run.iteration + 1)
                bar.n = run.iteration
                bar.refresh()
                continue
            bar.update(1)
            bar.set_postfix(reward=f"{row['reward/mean']:+.3f}", kl=f"{row['kl/mean']:.3f}",
                            s=f"{row['timing/iteration']:.1f}")
    finally:
        bar.close()
        writer.close()


def restart_learners(run: RunState, run_dir: Path, err: ActorFailed, logs: RunLogs) -> None:
    """A learner worker was lost: its DeepSpeed group (and optimiser state) is gone. Rebuild
    the group, load the newest intact checkpoint into it (none yet: the fresh group holds the
    run's starting weights, and the run starts over), bring the engines to its weights and go
    on; the iterations after that point are redone, with the numbers an uninterrupted run
    has, as `--resume` would. Up to `run.max_learner_restarts` times; then the run stops with
    the command that resumes it."""
    cfg, done = run.cfg, run.roles.recovery.restarts.get("learner", 0)
    try:
        checkpoint, skipped = choose_resume_checkpoint(run_dir)
    except CheckpointError:
        checkpoint, skipped = None, []
    if done >= cfg.run.max_learner_restarts:
        where = f"newest intact checkpoint: {checkpoint.name}" if checkpoint else "no checkpoint yet"
        raise RunStopped(f"{err} at iteration {run.running}; {done} learner restarts already "
                         f"(run.max_learner_restarts); {where}: continue the run with "
                         f"`rlaif-ray train --resume {run_dir}`") from None
    for line in skipped:
        log.warning("%s", line)
    log.warning("%s at iteration %d; rebuilding the learner group from %s (restart %d of %d)", err, run.running,
                checkpoint.name if checkpoint else "the starting weights", done + 1, cfg.run.max_learner_restarts)
    run.roles.learners.shutdown()
    started = time.perf_counter()
    learners, setups = start_learners(cfg, logs, run.roles.recovery)
    wait_all_ready([learners], cfg.run.startup_timeout_s, logs, started, also={"learner": setups})
    run.roles.learners = learners
    if run.chaos is not None:
        run.chaos.install(learners)
    counts = run.roles.recovery.state_dict()  # this process's counts, not the checkpoint's
    failed_at = run.running
    if checkpoint is not None:
        restore(run, run_dir, checkpoint)
    else:
        rewind(run, run_dir, run.start_state)
    run.roles.recovery.load_state_dict(counts)
    run.roles.recovery.count("learner", (failed_at - run.iteration) * cfg.data.prompts_per_iteration)
    run.probed_restarts = None  # probe the engines against the rebuilt learners


def summarize(rows: list[dict], window: int = 3) -> dict:
    """First vs last `window` iterations' mean reward with standard errors. `rows` as in
    metrics.jsonl, where a non-finite value is null (read here as NaN)."""
    if not rows:
        return {}
    def mean_se(rs):
        v = np.array([r["reward/mean"] for r in rs], dtype=float)
        return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    first, last = rows[:window], rows[-window:]
    (m0, s0), (m1, s1) = mean_se(first), mean_se(last)
    return {"iterations": len(rows), "reward_first": m0, "reward_first_se": s0, "reward_last": m1,
            "reward_last_se": s1, "kl_last": float(np.array(rows[-1]["kl/mean"], dtype=float)),
            "seconds_per_iteration": float(np.mean([r["timing/iteration"] for r in rows[1:] or rows]))}
