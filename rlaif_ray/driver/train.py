"""The PPO iteration, as a short sequence of named stages.

    prompts -> rollout -> score (labeler rewards ‖ reference logprobs ‖ scorer rewards)
            -> train (each learner's PPO step: old logprobs/values, combined rewards,
               advantages, optimiser steps) -> weight sync (+ probe) -> metrics

"prompts" starts the batches the pipeline keeps in flight (driver/pipeline.py): the
current one and, with `pipeline.max_staleness: k`, up to k more that the engines generate
while this one is scored and trained. Each generated chunk goes to scoring at once.
The driver passes ObjectRefs between roles and reads only small dicts of stats; the
batches stay in the object store.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlaif_ray.config import RolesConfig
from rlaif_ray.data import PromptStream
from rlaif_ray.driver.pipeline import Batch, Pipeline, staleness
from rlaif_ray.driver.roles import Roles
from rlaif_ray.weight_sync.driver import WeightSync
from rlaif_ray.weight_sync.probe import PROBE_NEW_TOKENS, judge_probe, should_probe
from rlaif_ray.errors import RunStopped


log = logging.getLogger("rlaif_ray")


@dataclass
class RunState:
    cfg: RolesConfig
    roles: Roles
    stream: PromptStream
    kl: object                  # FixedKLController | AdaptiveKLController
    sync: WeightSync
    probe_prompt: list[int]
    run_dir: Path | None = None  # where prompts.jsonl records which prompts each iteration saw
    policy_version: int = 0
    iteration: int = 0          # iterations done
    running: int = 0            # the iteration under way (or last under way: its checkpoint save belongs to it)
    samples: list[dict] = field(default_factory=list)  # the last iteration's samples to show (samples.jsonl)
    chaos: object | None = None  # the installed fault injection (driver/chaos.py), tests only
    start_state: dict | None = None  # the driver's state before iteration 1 (driver/resume.driver_state)
    checkpoint_clock: float | None = None  # time.monotonic() of this process's last checkpoint or restore
    probed_restarts: int | None = None  # rollout restarts at this process's last probe; None: no probe yet
    pipeline: Pipeline | None = None  # the rollout batches in flight (set in __post_init__)

    def __post_init__(self):
        self.pipeline = Pipeline(self)


class StageTimer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        yield
        self.seconds[f"timing/{stage}"] = time.perf_counter() - start


def run_iteration(run: RunState) -> dict:
    """One PPO iteration; returns its metrics row."""
    t = StageTimer()
    run.running = run.iteration + 1
    for pool in run.roles.all():
        pool.usage.reset()
    with t("iteration"):
        with t("prompts"):
            run.pipeline.fill()
        with t("rollout"):
            batch = run.pipeline.generated()
            record_prompts(run, batch)
            lag = staleness(batch, run.policy_version)
        with t("score"):
            scored = run.pipeline.scored(batch)
        with t("train"):
            exp_stats, train_stats = ppo_step(run, scored)
        with t("sync"):
            sync_stats = sync_weights(run)
        with t("probe"):
            probe_stats = probe_if_due(run)
    run.kl.update(exp_stats["kl/mean"], exp_stats["data/samples"])
    exp_stats.update(lag)
    run.iteration += 1
    return metrics_row(run, t.seconds, scored["timings"], exp_stats, train_stats, sync_stats, probe_stats)


# --------------------------------------------------------------------------- stages


def record_prompts(run: RunState, batch: Batch) -> None:
    """The prompts (stream position + text) an iteration trains on, in RUN_DIR/prompts.jsonl."""
    if run.run_dir is not None:
        with (Path(run.run_dir) / "prompts.jsonl").open("a") as f:
            f.write(json.dumps({"iteration": batch.iteration, "positions": [p.index for p in batch.prompts],
                                "prompts": [p.text for p in batch.prompts]}) + "\n")


def ppo_step(run: RunState, scored: dict) -> tuple[dict, dict]:
    """Every learner takes one PPO step on the scored batch (`LearnerWorker.ppo_step`: old
    logprobs, combined rewards, advantages, optimiser steps); returns rank 0's batch stats
    (its samples are recorded) and the step stats averaged over ranks."""
    per_rank = run.pipeline.run_on_learners("ppo_step", scored["shards"], source_refs(run, scored), scored["ref_logp"],
                                            run.kl.value, run.iteration)
    record_samples(run, per_rank[0]["samples"])
    laps = per_rank[0]["seconds"]
    exp_stats = {**per_rank[0]["experience"], "timing/values": laps["old_logprobs"],
                 "timing/advantages": laps["experience"], "timing/optimise": laps["optimise"]}
    steps = [r["train"] for r in per_rank]
    return exp_stats, {k: float(np.mean([r[k] for r in steps])) for k in steps[0]}


def source_refs(run: RunState, scored: dict) -> dict[str, list]:
    """The reward refs of every source a model scored, by source name: each reward model or
    classifier's own, and the labeler's for the labeler_direct source."""
    refs = dict(scored["scorers"])
    refs.update({s.label: scored["rewards"] for s in run.cfg.reward.sources if s.kind == "labeler_direct"})
    return refs


def record_samples(run: RunState, samples: list[dict]) -> None:
    """Keep this iteration's samples (TensorBoard text) and append them to RUN_DIR/samples.jsonl,
    one row each (`rlaif-ray samples RUN_DIR` prints them)."""
    run.samples = samples
    if run.run_dir is not None and samples:
        with (Path(run.run_dir) / "samples.jsonl").open("a") as f:
            f.writelines(json.dumps(row) + "\n" for row in samples)


def serve_start_weights(run: RunState) -> None:
    """Rollout engines kept from an earlier run (driver/warm.py) still serve its weights:
    before the first generation they get this run's (the fresh learners', version 0)."""
    if "rollout" in run.roles.kept:
        run.sync.push(run.roles.learners, run.roles.rollout, run.policy_version)


def sync_weights(run: RunState) -> dict:
    """The engines finish the chunks they are generating, then load the new weights."""
    run.pipeline.advance()
    run.policy_version += 1
    return run.sync.push(run.roles.learners, run.roles.rollout, run.policy_version)


def probe_if_due(run: RunState) -> dict:
    """The probe on the iterations `should_probe` picks (`sync.probe_every`); {} on the others,
    so a skipped iteration's row has no `sync/max_logprob_diff`."""
    restarts = run.roles.rollout.restarts
    if not run.cfg.sync.probe or not should_probe(run.iteration + 1, run.probed_restarts is None,
                                                  run.cfg.sync.probe_every, restarts != run.probed_restarts):
        return {}
    stats = probe(run)
    run.probed_restarts = restarts
    return stats


def probe(run: RunState) -> dict:
    """Max |logprob difference| between rollout engine 0 and the learner on a fixed prompt;
    above `sync.probe_bound` it warns or stops the run (`sync.probe_action`)."""
    timeout = run.cfg.sync.timeout_s
    tokens, engine_logp = run.roles.rollout.call(0, "probe", run.probe_prompt, PROBE_NEW_TOKENS, run.cfg.run.seed,
                                                 timeout_s=timeout)
    # Every rank runs the forward: under ZeRO-3 it gathers parameters collectively.
    learner_logp = run.roles.learners.call_all("probe_logprobs", run.probe_prompt, tokens, timeout_s=timeout)[0]
    diff = float(np.max(np.abs(np.asarray(engine_logp) - np.asarray(learner_logp))))
    verdict = judge_probe(diff, run.cfg.sync.probe_bound_for(run.cfg.model.dtype), run.cfg.sync.probe_action, "rollout-0")
    if verdict.action == "stop":
        raise RunStopped(verdict.message)
    if verdict.action == "warn":
        log.warning(verdict.message)
    return {"sync/max_logprob_diff": diff}


def utilization(pools: list, wall_s: float) -> dict:
    """Per role, the share of the iteration its actors spent on calls (1.0: every actor busy
    all the time; the role to scale first is the one near 1 while the others wait), and the
    share the driver spent waiting on actors."""
    wall_s = max(wall_s, 1e-9)
    row = {f"utilization/{p.role}": p.usage.busy_s / (len(p.actors) * wall_s) for p in pools}
    row["utilization/driver_waiting"] = sum(p.usage.waited_s for p in pools) / wall_s
    return row


def metrics_row(run: RunState, seconds: dict, score_timings: dict, exp: dict, train: dict,
                sync: dict, probe_stats: dict) -> dict:
    samples = exp["data/samples"]
    tokens = exp["response_length/mean"] * samples
    row = {"iteration": run.iteration, "policy_version": run.policy_version}
    row.update({k: v for k, v in exp.items() if k != "seconds"})
    row.update({k: v for k, v in train.items() if k != "seconds"})
    row.update(sync)
    row.update(probe_stats)
    row.update(seconds)
    row.update(score_timings)
    row["throughput/tokens_per_s"] = tokens / max(seconds["timing/iteration"], 1e-9)
    row["data/truncated_prompts"] = run.stream.truncated
    row["data/dropped_prompts"] = run.stream.dropped
    row["data/position"] = run.stream.position
    row.update(run.roles.recovery.metrics())
    row.update(utilization(run.roles.all(), seconds["timing/iteration"]))
    return row
