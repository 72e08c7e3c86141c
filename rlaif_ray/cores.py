"""How many compute threads each role's actors use on a shared CPU node.

Ray gives an actor reserving `num_cpus: 1` one compute thread. In local mode on one small
machine the roles take turns, so the role whose turn it is should use the cores the others
leave idle: issue 13 measured a 32-sequence forward at 1.96× and a vLLM engine at 1.7× the
speed with 2 threads instead of 1 on 2 cores. Threads beyond the cores do harm instead
(OpenMP threads wait on each other at every barrier), so the cores are shared among the
actors that compute at the same time.

Which actors compute at the same time (synchronous mode, `pipeline.max_staleness` 0):

    generate: the rollout engines
    score   : the labeler, the reference and every reward scorer, side by side
    train   : the learners

    threads(actor of role R) = max(1, ⌊cores / actors computing in R's stage⌋)

With `max_staleness` ≥ 1 every stage runs at once, so every actor shares the cores. A
role's `resources.threads` or `resources.cpu_affinity` wins over this.
"""

from __future__ import annotations

from rlaif_ray.config import RolesConfig


def stage_actor_counts(cfg: RolesConfig, reference: bool = True) -> dict[str, int]:
    """Per role, how many actors compute at the same time as that role's actors."""
    score = {"labeler": cfg.labeler.num_actors if cfg.uses_labeler else 0,
             "reference": cfg.reference.num_actors if reference else 0,
             **{s.label: s.num_actors for s in cfg.reward.sources if s.kind in ("reward_model", "classifier")}}
    stages = [{"rollout": cfg.rollout.num_actors}, {k: n for k, n in score.items() if n}, {"learner": cfg.learner.num_workers}]
    if cfg.max_staleness > 0:
        stages = [{k: n for stage in stages for k, n in stage.items()}]
    return {role: sum(stage.values()) for stage in stages for role in stage}


def role_threads(cfg: RolesConfig, node_cores: int | None, reference: bool = True) -> dict[str, int | None]:
    """Compute threads per role on a local node of `node_cores` cores (None, a cluster: only
    what a role's `resources.threads` says). None for a role: Ray's default or its cpu_affinity."""
    sections = {"rollout": cfg.rollout, "labeler": cfg.labeler, "learner": cfg.learner,
                **({"reference": cfg.reference} if reference else {}),
                **{s.label: s for s in cfg.reward.sources if s.kind in ("reward_model", "classifier")}}
    threads: dict[str, int | None] = {}
    for role, sharing in stage_actor_counts(cfg, reference).items():
        r = sections[role].resources
        derive = not (r.threads or r.cpu_affinity) and node_cores is not None
        threads[role] = max(1, node_cores // sharing) if derive else r.threads
    return threads


def local_node_cores(ray_init, available: int) -> int | None:
    """The cores a private local Ray's actors share (`ray.num_cpus` may claim more than the
    `available` ones, e.g. to fit more actors; threads follow the real cores); None when the
    run joins a cluster, whose nodes Ray sizes."""
    if ray_init.address is not None:
        return None
    return min(ray_init.num_cpus or available, available)
