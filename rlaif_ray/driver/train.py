"""The PPO iteration, as a short sequence of named stages.

    prompts -> rollout -> (labeler rewards ‖ reference logprobs ‖ learner logprobs/values)
            -> advantages -> train -> weight sync (+ probe) -> metrics

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
import ray

from rlaif_ray.config import RunConfig
from rlaif_ray.data import Prompt, PromptStream
from rlaif_ray.driver.chaos import kill_after_call, stall_before_call
from rlaif_ray.driver.pools import ActorFailed, ActorPool, get_with_timeout
from rlaif_ray.driver.roles import Roles
from rlaif_ray.driver.sync import WeightSync
from rlaif_ray.probe import PROBE_NEW_TOKENS, judge_probe, should_probe
from rlaif_ray.run_dir import RunStopped


log = logging.getLogger("rlaif_ray")


@dataclass
class RunState:
    cfg: RunConfig
    roles: Roles
    stream: PromptStream
    kl: object                  # FixedKLController | AdaptiveKLController
    sync: WeightSync
    probe_prompt: list[int]
    run_dir: Path | None = None  # where prompts.jsonl records which prompts each iteration saw
    policy_version: int = 0
    iteration: int = 0
    redone_prompts: int = 0
    fired_faults: set = field(default_factory=set)  # chaos faults already injected
    samples: list[dict] = field(default_factory=list)  # the last iteration's samples to show (samples.jsonl)
    probed_restarts: int | None = None  # rollout restarts at this process's last probe; None: no probe yet


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
    with t("iteration"):
        with t("prompts"):
            prompts = take_prompts(run)
        with t("rollout"):
            shards = generate(run, prompts)
        with t("score"):
            scored = score(run, shards)
        with t("advantages"):
            exp_stats = prepare_experience(run, shards, scored)
        with t("train"):
            train_stats = train(run)
        with t("sync"):
            sync_stats = sync_weights(run)
        with t("probe"):
            probe_stats = probe_if_due(run)
    run.kl.update(exp_stats["kl/mean"], exp_stats["data/samples"])
    run.iteration += 1
    return metrics_row(run, t.seconds, scored["timings"], exp_stats, train_stats, sync_stats, probe_stats)


# --------------------------------------------------------------------------- stages


def take_prompts(run: RunState) -> list[Prompt]:
    """The next prompts of the stream, recorded (position + text) in RUN_DIR/prompts.jsonl."""
    prompts = run.stream.take(run.cfg.data.prompts_per_iteration)
    if run.run_dir is not None:
        with (Path(run.run_dir) / "prompts.jsonl").open("a") as f:
            f.write(json.dumps({"iteration": run.iteration + 1, "positions": [p.index for p in prompts],
                                "prompts": [p.text for p in prompts]}) + "\n")
    return prompts


def generate(run: RunState, prompts: list[Prompt]) -> list:
    """Split prompts over the rollout actors; returns one shard ObjectRef per actor.

    A rollout actor that dies or times out is replaced, given the current weights, and its
    prompts are generated again (same seeds, so the same samples).
    """
    pool = run.roles.rollout
    chunks = [list(c) for c in np.array_split(np.arange(len(prompts)), len(pool.actors))]
    items = [[(prompts[i].index, prompts[i].token_ids, prompts[i].text) for i in c] for c in chunks]
    stall_before_call(run, "rollout", pool)
    calls = [a.generate.remote(it, run.policy_version) for a, it in zip(pool.actors, items)]
    kill_after_call(run, "rollout", pool)
    for i in range(len(calls)):
        calls[i] = _await_or_redo(run, pool, i, calls[i], lambda a, i=i: a.generate.remote(items[i], run.policy_version),
                                  "generate", on_replace=lambda a, name: run.sync.load_latest(a, name),
                                  n_redone=len(items[i]))
    return [shard for shard, _stats in calls]


def score(run: RunState, shards: list) -> dict:
    """Labeler rewards ‖ reference logprobs ‖ learner old logprobs and values, concurrently."""
    lab = run.roles.labeler
    groups = [list(g) for g in np.array_split(np.arange(len(shards)), len(lab.actors)) if len(g)] if lab else []
    reward_refs, reward_stats = [], []
    if lab:
        stall_before_call(run, "labeler", lab)
    for a, g in zip(lab.actors if lab else [], groups):
        r, s = a.direct_rewards.remote([shards[i] for i in g])
        reward_refs.append(r)
        reward_stats.append(s)
    if lab:
        kill_after_call(run, "labeler", lab)
    scorer_calls = dispatch_scorers(run, shards)  # reward_model / classifier sources, concurrently too
    ref_logp, ref_stats = run.roles.reference.actors[0].logprobs.remote(shards)
    olds, old_stats = zip(*(l.old_logprobs_and_values.remote(shards) for l in run.roles.learners.actors))
    timeout = run.cfg.run.call_timeout_s
    for i, g in enumerate(groups):
        retry = lambda a, g=g: a.direct_rewards.remote([shards[j] for j in g])
        reward_refs[i], reward_stats[i] = _await_or_redo(
            run, lab, i, (reward_refs[i], reward_stats[i]), retry, "direct_rewards", n_redone=0)
    timings = {
        "timing/reward": max((s["seconds"] for s in ray.get(reward_stats)), default=0.0),
        "timing/reference": get_with_timeout(ref_stats, timeout, "reference", "logprobs")["seconds"],
        "timing/values": max(s["seconds"] for s in get_with_timeout(list(old_stats), timeout, "learner", "old logprobs")),
    }
    scorers = await_scorers(run, shards, scorer_calls, timings)
    return {"rewards": reward_refs, "ref_logp": [ref_logp], "old": list(olds), "timings": timings, "scorers": scorers}


def dispatch_scorers(run: RunState, shards: list) -> dict:
    """Start every reward_model/classifier pool on its share of the shards (contiguous groups,
    so concatenating the results in order gives the batch's row order); returns, per source
    name, (groups, [(reward_ref, stats_ref) per actor])."""
    calls = {}
    for name, pool in (run.roles.scorers or {}).items():
        groups = [list(g) for g in np.array_split(np.arange(len(shards)), len(pool.actors)) if len(g)]
        calls[name] = (groups, [a.scores.remote([shards[i] for i in g]) for a, g in zip(pool.actors, groups)])
    return calls


def await_scorers(run: RunState, shards: list, calls: dict, timings: dict) -> dict:
    """Wait for the scorers (a dead or stuck one is replaced and its share redone); adds
    `timing/reward/<name>` to timings; returns {source name: [reward refs in row order]}."""
    refs = {}
    for name, (groups, pending) in calls.items():
        pool = run.roles.scorers[name]
        for i, g in enumerate(groups):
            retry = lambda a, g=g: a.scores.remote([shards[j] for j in g])
            pending[i] = _await_or_redo(run, pool, i, pending[i], retry, "scores", n_redone=0)
        timings[f"timing/reward/{name}"] = max(s["seconds"] for s in ray.get([st for _, st in pending]))
        refs[name] = [r for r, _ in pending]
    return refs


def prepare_experience(run: RunState, shards: list, scored: dict) -> dict:
    """Advantages on every learner; returns rank 0's numeric stats (its samples are recorded)."""
    refs = [l.prepare_experience.remote(shards, scored["rewards"], scored["ref_logp"], scored["old"],
                                        run.kl.value, run.iteration, scored.get("scorers"))
            for l in run.roles.learners.actors]
    stats = get_with_timeout(refs, run.cfg.run.call_timeout_s, "learner", "advantages")[0]
    record_samples(run, stats.pop("samples", []))
    return stats


def record_samples(run: RunState, samples: list[dict]) -> None:
    """Keep this iteration's samples (TensorBoard text) and append them to RUN_DIR/samples.jsonl,
    one row each (`rlaif-ray samples RUN_DIR` prints them)."""
    run.samples = samples
    if run.run_dir is not None and samples:
        with (Path(run.run_dir) / "samples.jsonl").open("a") as f:
            f.writelines(json.dumps(row) + "\n" for row in samples)


def train(run: RunState) -> dict:
    refs = [l.train.remote() for l in run.roles.learners.actors]
    kill_after_call(run, "learner", run.roles.learners)
    per_rank = get_with_timeout(refs, run.cfg.run.call_timeout_s, "learner", "train")
    return {k: float(np.mean([r[k] for r in per_rank])) for k in per_rank[0]}


def sync_weights(run: RunState) -> dict:
    run.policy_version += 1
    return run.sync.push(run.roles.learners.actors, run.roles.rollout.actors, run.roles.rollout.names(),
                         run.policy_version)


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
    tokens, engine_logp = get_with_timeout(
        run.roles.rollout.actors[0].probe.remote(run.probe_prompt, PROBE_NEW_TOKENS, run.cfg.run.seed), timeout, "rollout-0", "probe")
    # Every rank runs the forward: under ZeRO-3 it gathers parameters collectively.
    learner_logp = get_with_timeout([l.probe_logprobs.remote(run.probe_prompt, tokens)
                                     for l in run.roles.learners.actors], timeout, "learner", "probe")[0]
    diff = float(np.max(np.abs(np.asarray(engine_logp) - np.asarray(learner_logp))))
    verdict = judge_probe(diff, run.cfg.sync.probe_bound_for(run.cfg.model.dtype), run.cfg.sync.probe_action, "rollout-0")
    if verdict.action == "stop":
        raise RunStopped(verdict.message)
    if verdict.action == "warn":
        log.warning(verdict.message)
    return {"sync/max_logprob_diff": diff}


# --------------------------------------------------------------------------- helpers


def _await_or_redo(run: RunState, pool: ActorPool, i: int, call, retry, what: str, n_redone: int,
                   on_replace=None):
    """Wait for actor i's (payload_ref, stats_ref) call; on death or timeout replace the
    actor and redo the call. Only the small stats object is fetched, never the payload."""
    name = f"{pool.role}-{i}"
    for attempt in range(run.cfg.run.max_actor_restarts + 1):
        try:
            ray.get(call[1], timeout=run.cfg.run.call_timeout_s)
            return call
        except Exception as err:  # actor death, timeout, or a crash inside the call
            failure = ActorFailed(name, f"{what} failed", err)
            if attempt == run.cfg.run.max_actor_restarts:
                raise failure from None
            actor = pool.replace(i, run.cfg.run.startup_timeout_s)
            if on_replace:
                on_replace(actor, name)
            run.redone_prompts += n_redone
            call = retry(actor)
    raise AssertionError("unreachable")


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
    row["timing/advantages"] = seconds["timing/advantages"]
    row["throughput/tokens_per_s"] = tokens / max(seconds["timing/iteration"], 1e-9)
    row["data/truncated_prompts"] = run.stream.truncated
    row["data/dropped_prompts"] = run.stream.dropped
    row["data/position"] = run.stream.position
    row["recovery/actor_restarts"] = sum(p.restarts for p in (run.roles.rollout, run.roles.labeler) if p)
    row["recovery/redone_prompts"] = run.redone_prompts
    return row
