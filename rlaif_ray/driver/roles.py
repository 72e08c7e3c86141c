"""Start every role of a run: rollout, labeler, reference and learner pools."""

from __future__ import annotations

import os
import time
from collections.abc import Hashable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from actors.labeler import LabelerActor
from actors.learner import LearnerWorker
from actors.reference import ReferenceActor
from actors.reward_model import RewardModelActor
from actors.rollout import RolloutActor
from rlaif_ray.config import Resources, RolesConfig
from rlaif_ray.cores import local_node_cores, role_threads
from rlaif_ray.driver.calls import CallPolicy, Recovery
from rlaif_ray.driver.logs import STREAM, RunLogs
from rlaif_ray.labeler.render import labeler_context_tokens
from rlaif_ray.modeling import plan_kv_cache
from rlaif_ray.driver.pools import ActorPool, describe_roles, get_with_timeout, wait_all_ready
from rlaif_ray.driver.runtime import actor_env
from rlaif_ray.driver.warm import WarmRoles, pool_key


@dataclass
class Roles:
    rollout: ActorPool
    labeler: ActorPool | None    # None when no reward source needs the AI labeler
    reference: ActorPool | None  # None when started without it (rejection sampling)
    learners: ActorPool
    scorers: dict[str, ActorPool] | None = None  # source name -> pool, one per reward_model/classifier source
    recovery: Recovery | None = None             # replacements and redone prompts, shared by the pools
    keys: dict[str, Hashable | None] = field(default_factory=dict)  # role -> its warm.pool_key
    kept: set[str] = field(default_factory=set)  # roles taken from an earlier run's pools (driver/warm.py)

    def all(self) -> list[ActorPool]:
        pools = [p for p in (self.rollout, self.labeler, self.reference, self.learners) if p is not None]
        return pools + list((self.scorers or {}).values())

    def shutdown(self) -> None:
        for pool in self.all():
            pool.shutdown()

    def keep_in(self, warm: WarmRoles) -> None:
        """Hand every pool to `warm` for the next run (those it cannot keep are shut down)."""
        warm.keep([(self.keys.get(p.role), p) for p in self.all()])


@dataclass
class PoolPlan:
    """One role's pool as a run wants it: what `ActorPool` is built from."""

    role: str
    cls: type
    resources: Resources
    count: int
    make_args: Callable[[int], tuple]  # actor i's constructor (and `reset`) arguments
    replaceable: bool = True


def role_plans(cfg: RolesConfig, reference: bool = True) -> list[PoolPlan]:
    """Every pool of a run, in the order of `Roles.all()`."""
    plans = [PoolPlan("rollout", RolloutActor, cfg.rollout.resources, cfg.rollout.num_actors, lambda r: (cfg, r))]
    if cfg.uses_labeler:
        # A training run's labeler judges one prompt and one response.
        context = labeler_context_tokens(cfg.labeler, cfg.data.max_prompt_tokens + cfg.rollout.sampling.max_new_tokens)
        plans.append(PoolPlan("labeler", LabelerActor, cfg.labeler.resources, cfg.labeler.num_actors,
                              lambda r: (cfg, r, context)))
    if reference:
        plans.append(PoolPlan("reference", ReferenceActor, cfg.reference.resources, cfg.reference.num_actors,
                              lambda r: (cfg,)))
    plans.append(learner_plan(cfg))
    plans += [PoolPlan(s.label, RewardModelActor, s.resources, s.num_actors, lambda r, k=k: (cfg, k, r))
              for k, s in enumerate(cfg.reward.sources) if s.kind in ("reward_model", "classifier")]
    return plans


def learner_plan(cfg: RolesConfig) -> PoolPlan:
    """The learner workers: one group, so a lost member is not replaced alone
    (`replaceable=False`); the run rebuilds it."""
    w = cfg.learner.num_workers
    return PoolPlan("learner", LearnerWorker, cfg.learner.resources, w, lambda r: (cfg, r, w), replaceable=False)


def start_roles(cfg: RolesConfig, reference: bool = True, logs: RunLogs = STREAM, warm: WarmRoles | None = None) -> Roles:
    """Create all pools at once (engines build concurrently), then wait until all answer.

    `reference=False` skips the frozen reference copy (a run without a KL term). `warm`: pools
    kept from earlier runs, taken where they fit (driver/warm.py). Says on the terminal which
    roles are starting, then when each is ready; each actor's output goes to its file under
    `logs`.
    """
    recovery, policy = Recovery(), CallPolicy.of(cfg.run)
    threads = run_threads(cfg, reference)
    plans = role_plans(cfg, reference)
    # Keys read each model's config from disk: only worth it when something may be kept.
    keys = {p.role: pool_key(p.role, p.cls, p.resources, p.count, p.make_args, threads[p.role])
            for p in plans} if warm is not None else {}
    kept = warm.claim(list(keys.values())) if warm is not None else {}
    started = time.perf_counter()
    reused = [p.role for p in plans if keys.get(p.role) in kept]
    logs.say(f"starting {describe_roles([(p.role, p.count) for p in plans])}"
             + (f" (kept from the last run: {', '.join(reused)})" if reused else ""))
    warn_if_generating_in_waves(cfg, logs)
    pools, resets = {}, {}
    # The learners first: their rendezvous waits on rank 0's process while the rest start.
    for p in sorted(plans, key=lambda p: p.role != "learner"):
        if p.role in reused:
            pools[p.role] = kept[keys[p.role]]
            resets[p.role] = pools[p.role].rebind(p.make_args, logs, policy, recovery)
        else:
            pools[p.role] = open_pool(p, cfg, logs, recovery, threads[p.role])
    scorers = {p.role: pools[p.role] for p in plans if p.cls is RewardModelActor}
    roles = Roles(pools["rollout"], pools.get("labeler"), pools.get("reference"), pools["learner"], scorers,
                  recovery, keys, set(reused))
    # Every actor was created before the learners' rendezvous waits on rank 0's process: the
    # engines start meanwhile. Learners count as ready once their DeepSpeed set-up is done.
    try:
        resets["learner"] = resets.get("learner", []) + set_up_learners(cfg, roles.learners)
        wait_all_ready(roles.all(), cfg.run.startup_timeout_s, logs, started, also=resets)
    except BaseException:  # nothing is left running on a cluster the run joined
        roles.shutdown()
        raise
    return roles


def open_pool(plan: PoolPlan, cfg: RolesConfig, logs: RunLogs, recovery: Recovery | None,
              threads: int | None) -> ActorPool:
    """Start the actors of `plan` (each builds its engine in its own process)."""
    return ActorPool(plan.role, plan.cls, plan.resources, plan.count, plan.make_args, actor_env(cfg.ray),
                     cfg.run.startup_timeout_s, logs, CallPolicy.of(cfg.run), replaceable=plan.replaceable,
                     recovery=recovery, threads=threads)


@contextmanager
def running_roles(cfg: RolesConfig, reference: bool = True, logs: RunLogs = STREAM, warm: WarmRoles | None = None):
    """`start_roles`, and after the block: the roles kept in `warm` if it ended well, else
    shut down (a failed run's actors are in no state to serve another)."""
    roles = start_roles(cfg, reference, logs, warm)
    try:
        yield roles
    except BaseException:
        roles.shutdown()
        raise
    roles.keep_in(warm) if warm is not None else roles.shutdown()


def warn_if_generating_in_waves(cfg: RolesConfig, logs: RunLogs) -> None:
    """Say so when a rollout engine's configured KV cache cannot hold one generate call's
    sequences at once: vLLM then generates them in waves, silently slower."""
    if cfg.rollout.kv_cache_mib is None or cfg.rollout.resources.num_gpus > 0:
        return
    kv = plan_kv_cache(cfg.model.policy, cfg.model.dtype, cfg.rollout.kv_cache_mib, cfg.rollout_sequences_per_call,
                       cfg.rollout_tokens_per_sequence, cfg.model.trust_remote_code)
    if kv.in_waves:
        logs.say(f"warning: rollout.kv_cache_mib {kv.mib} holds {kv.holds} of the {kv.sequences} sequences each rollout "
                 f"engine generates at once, so vLLM generates them in waves (slower); {kv.needed_mib} holds them all "
                 "(null sizes it so)")


def run_threads(cfg: RolesConfig, reference: bool = True) -> dict[str, int | None]:
    """Compute threads per role for this run's node (rlaif_ray.cores)."""
    return role_threads(cfg, local_node_cores(cfg.ray, len(os.sched_getaffinity(0))), reference)


def start_learners(cfg: RolesConfig, logs: RunLogs = STREAM, recovery: Recovery | None = None,
                   threads: int | None = None) -> tuple[ActorPool, list]:
    """The learner group and the refs of its DeepSpeed set-up (done when they resolve)."""
    learners = learner_group(cfg, logs, recovery, threads)
    return learners, set_up_learners(cfg, learners)


def learner_group(cfg: RolesConfig, logs: RunLogs = STREAM, recovery: Recovery | None = None,
                  threads: int | None = None) -> ActorPool:
    """The learner workers, created (not yet set up). `threads`: each worker's compute
    threads (None: what `run_threads` gives the learners)."""
    return open_pool(learner_plan(cfg), cfg, logs, recovery, threads or run_threads(cfg)["learner"])


def set_up_learners(cfg: RolesConfig, learners: ActorPool) -> list:
    """Join the group's process group and build its DeepSpeed engines; the refs resolve when done."""
    # The rendezvous address is rank 0's node, wherever Ray placed it.
    addr, port = get_with_timeout(learners.actors[0].rendezvous_address.remote(), cfg.run.startup_timeout_s,
                                  "learner-0", "start-up")
    return [a.setup.remote(addr, port) for a in learners.actors]
