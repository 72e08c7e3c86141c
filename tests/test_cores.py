"""Compute threads per role on a shared CPU node (rlaif_ray.cores), by hand-worked counts."""

from rlaif_ray.config import RayInit
from rlaif_ray.cores import local_node_cores, role_threads, stage_actor_counts


def test_roles_that_take_turns_each_get_the_cores(make_config):
    # The embedded default: 1 rollout engine; labeler ‖ reference; 1 learner.
    assert role_threads(make_config(), 2) == {"rollout": 2, "labeler": 1, "reference": 1, "learner": 2}
    cfg = make_config("learner.num_workers=2", "rollout.num_actors=2")
    assert stage_actor_counts(cfg) == {"rollout": 2, "labeler": 2, "reference": 2, "learner": 2}
    assert role_threads(cfg, 2) == {"rollout": 1, "labeler": 1, "reference": 1, "learner": 1}
    assert role_threads(cfg, 8) == {"rollout": 4, "labeler": 4, "reference": 4, "learner": 4}
    # One learner and one engine on 2 cores: each uses both on its turn; the reference
    # alone in its stage (a function reward, no labeler) too.
    one = make_config("learner.num_workers=1", "rollout.num_actors=1",
                      'reward.sources=[{kind: function, function: "toy.task:rule_score"}]')
    assert role_threads(one, 2) == {"rollout": 2, "reference": 2, "learner": 2}
    assert role_threads(one, 2, reference=False) == {"rollout": 2, "learner": 2}


def test_pipelined_roles_share_the_cores(make_config):
    cfg = make_config("pipeline.max_staleness=1", "ppo.off_policy_correction=tis", "learner.num_workers=2",
                      "rollout.num_actors=2")
    # 2 engines + labeler + reference + 2 learners all compute at once: ⌊8 / 6⌋ = 1.
    assert stage_actor_counts(cfg) == {"rollout": 6, "labeler": 6, "reference": 6, "learner": 6}
    assert role_threads(cfg, 8) == {"rollout": 1, "labeler": 1, "reference": 1, "learner": 1}
    assert role_threads(cfg, 12)["learner"] == 2


def test_a_role_s_own_resources_win(make_config):
    cfg = make_config("learner.resources.threads=3", "rollout.resources.cpu_affinity=[0]")
    threads = role_threads(cfg, 2)
    assert threads["learner"] == 3 and threads["rollout"] is None and threads["labeler"] == 1
    # On a cluster only what a role says itself.
    assert role_threads(cfg, None) == {"rollout": None, "labeler": None, "reference": None, "learner": 3}


def test_the_local_node_is_its_real_cores():
    assert local_node_cores(RayInit(num_cpus=16), available=2) == 2  # extra Ray CPUs are not cores
    assert local_node_cores(RayInit(num_cpus=1), available=2) == 1
    assert local_node_cores(RayInit(), available=4) == 4
    assert local_node_cores(RayInit(address="auto"), available=4) is None
