"""Start every role of a run: rollout, labeler, reference and learner pools."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from actors.labeler import LabelerActor
from actors.learner import LearnerWorker
from actors.reference import ReferenceActor
from actors.reward_model import RewardModelActor
from actors.rollout import RolloutActor
from rlaif_ray.config import RolesConfig
from rlaif_ray.cores import local_node_cores, role_threads
from rlaif_ray.driver.calls import CallPolicy, Recovery
from rlaif_ray.driver.logs import STREAM, RunLogs
from rlaif_ray.labeler.render import labeler_context_tokens
from rlaif_ray.modeling import plan_kv_cache
from rlaif_ray.driver.pools import ActorPool, describe_roles, get_with_timeout, wait_all_ready
from rlaif_ray.driver.runtime import actor_env


@dataclass
class Roles:
    rollout: ActorPool
    labeler: ActorPool | None    # None when no reward source needs the AI labeler
    reference: ActorPool | None  # None when started without it (rejection sampling)
    learners: ActorPool
    scorers: dict[str, ActorPool] | None = None  # source name -> pool, one per reward_model/classifier source
    recovery: Recovery | None = None             # replacements and redone prompts, shared by the pools

    def all(self) -> list[ActorPool]:
        pools = [p for p in (self.rollout, self.labeler, self.reference, self.learners) if p is not None]
        return pools + list((self.scorers or {}).values())

    def shutdown(self) -> None:
        for pool in self.all():
            pool.shutdown()


def start_roles(cfg: RolesConfig, reference: bool = True, logs: RunLogs = STREAM) -> Roles:
    """Create all pools at once (engines build concurrently), then wait until all answer.

    `reference=False` skips the frozen reference copy (a run without a KL term). Says on the
    terminal which roles are starting, then when each is ready; each actor's output goes to
    its file under `logs`.
    """
    env = actor_env(cfg.ray)
    timeout = cfg.run.startup_timeout_s
    w = cfg.learner.num_workers
    recovery = Recovery()

    threads = run_threads(cfg, reference)

    def pool(role, cls, resources, count, make_args):
        return ActorPool(role, cls, resources, count, make_args, env, timeout, logs, CallPolicy.of(cfg.run),
                         recovery=recovery, threads=threads[role])
    scorer_sources = [(k, s) for k, s in enumerate(cfg.reward.sources) if s.kind in ("reward_model", "classifier")]
    counts = [("rollout", cfg.rollout.num_actors)]  # in the order of Roles.all()
    counts += [("labeler", cfg.labeler.num_actors)] if cfg.uses_labeler else []
    counts += [("reference", cfg.reference.num_actors)] if reference else []
    counts += [("learner", w)] + [(s.label, s.num_actors) for _, s in scorer_sources]
    started = time.perf_counter()
    logs.say(f"starting {describe_roles(counts)}")
    warn_if_generating_in_waves(cfg, logs)
    learners = learner_group(cfg, logs, recovery, threads["learner"])
    rollout = pool("rollout", RolloutActor, cfg.rollout.resources, cfg.rollout.num_actors, lambda r: (cfg, r))
    labeler = None
    if cfg.uses_labeler:
        # A training run's labeler judges one prompt and one response.
        context = labeler_context_tokens(cfg.labeler, cfg.data.max_prompt_tokens + cfg.rollout.sampling.max_new_tokens)
        labeler = pool("labeler", LabelerActor, cfg.labeler.resources, cfg.labeler.num_actors, lambda r: (cfg, r, context))
    ref_pool = None
    if reference:
        ref_pool = pool("reference", ReferenceActor, cfg.reference.resources, cfg.reference.num_actors, lambda r: (cfg,))
    scorers = {s.label: pool(s.label, RewardModelActor, s.resources, s.num_actors, lambda r, k=k: (cfg, k, r))
               for k, s in scorer_sources}
    roles = Roles(rollout, labeler, ref_pool, learners, scorers, recovery)
    # Every actor was created before the learners' rendezvous waits on rank 0's process: the
    # engines start meanwhile. Learners count as ready once their DeepSpeed set-up is done.
    try:
        wait_all_ready(roles.all(), timeout, logs, started, also={"learner": set_up_learners(cfg, learners)})
    except BaseException:  # nothing is left running on a cluster the run joined
        roles.shutdown()
        raise
    return roles


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
    """The learner workers, created (not yet set up). One group: a lost member is not replaced
    alone (`replaceable=False`); the run rebuilds it. `threads`: each worker's compute threads
    (None: what `run_threads` gives the learners)."""
    w = cfg.learner.num_workers
    threads = threads or run_threads(cfg)["learner"]
    return ActorPool("learner", LearnerWorker, cfg.learner.resources, w, lambda r: (cfg, r, w), actor_env(cfg.ray),
                     cfg.run.startup_timeout_s, logs, CallPolicy.of(cfg.run), replaceable=False, recovery=recovery,
                     threads=threads)


def set_up_learners(cfg: RolesConfig, learners: ActorPool) -> list:
    """Join the group's process group and build its DeepSpeed engines; the refs resolve when done."""
    # The rendezvous address is rank 0's node, wherever Ray placed it.
    addr, port = get_with_timeout(learners.actors[0].rendezvous_address.remote(), cfg.run.startup_timeout_s,
                                  "learner-0", "start-up")
    return [a.setup.remote(addr, port) for a in learners.actors]
