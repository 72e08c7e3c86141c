"""NCCL weight sync on real GPUs: one DeepSpeed learner and one vLLM rollout engine, each on
its own GPU (NCCL refuses two ranks of one communicator on the same device), a sync through
`sync.backend: nccl`, then the probe.

Not run yet: written without a GPU (see docs/weight-sync.md). The CPU twin,
tests/e2e/test_nccl_sync_cpu.py, runs the same path over gloo.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory):
    import ray
    import torch
    import yaml

    from actors.learner import LearnerWorker
    from actors.rollout import RolloutActor
    from rlaif_ray.config import apply_overrides, config_from_dict
    from rlaif_ray.driver.pools import ActorPool, get_with_timeout
    from rlaif_ray.driver.roles import Roles
    from rlaif_ray.driver.runtime import actor_env, ray_session
    from rlaif_ray.weight_sync.driver import make_weight_sync
    from rlaif_ray.driver.train import RunState
    from rlaif_ray.modeling import load_tokenizer
    from rlaif_ray.weight_sync.probe import probe_prompt
    from toy.task import write_toy_prompts_jsonl

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs: one for the learner, one for the rollout engine")
    data = tmp_path_factory.mktemp("data") / "prompts.jsonl"
    write_toy_prompts_jsonl(data, 64, seed=0, split="train")
    raw = apply_overrides(yaml.safe_load((REPO_ROOT / "configs" / "local.yaml").read_text()), [
        f"model.policy={tiny_models['policy']}", f"model.labeler={tiny_models['labeler']}",
        f"data.source={data}", "learner.num_workers=1", "rollout.num_actors=1",
        "learner.resources.num_gpus=1", "rollout.resources.num_gpus=1",
        "rollout.gpu_memory_utilization=0.3", "sync.backend=nccl", "sync.bucket_mib=1"])
    cfg = config_from_dict(raw)
    with ray_session(cfg.ray):
        env, timeout = actor_env(cfg.ray), cfg.run.startup_timeout_s
        learners = ActorPool("learner", LearnerWorker, cfg.learner.resources, 1, lambda r: (cfg, r, 1), env, timeout)
        addr, port = ray.get(learners.actors[0].rendezvous_address.remote())
        get_with_timeout(learners.actors[0].setup.remote(addr, port), timeout, "learner-0", "set-up")
        rollout = ActorPool("rollout", RolloutActor, cfg.rollout.resources, 1, lambda r: (cfg, r), env, timeout)
        rollout.wait_ready(timeout)
        yield RunState(cfg, Roles(rollout, None, None, learners), None, None, make_weight_sync(cfg.sync),
                       probe_prompt(load_tokenizer(cfg.model.policy)))
        rollout.shutdown()
        learners.shutdown()


def _perturb(learner, seed: int) -> None:
    import ray

    def move(self, seed):
        import torch

        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.policy.module.parameters():
                p.add_((0.05 * torch.randn(p.shape, generator=g)).to(p.device, p.dtype))
    ray.get(learner.__ray_call__.remote(move, seed))


def test_nccl_sync_matches_learner(run):
    import ray

    from rlaif_ray.weight_sync.driver import NcclSync
    from rlaif_ray.driver.train import probe

    assert isinstance(run.sync, NcclSync)
    learner = run.roles.learners.actors[0]
    _perturb(learner, seed=1)
    before = probe(run)["sync/max_logprob_diff"]
    run.policy_version += 1
    stats = run.sync.push(run.roles.learners, run.roles.rollout, run.policy_version)
    after = probe(run)["sync/max_logprob_diff"]
    print(f"NCCL sync: probe diff before {before:.2e}, after {after:.2e}; {stats}")
    assert before > 1e-3 and after <= 1e-4
    prompts = [run.probe_prompt[:20]]
    assert ray.get(run.roles.rollout.actors[0].generate_greedy.remote(prompts, 10)) == \
        ray.get(learner.generate_greedy.remote(prompts, 10))
    _perturb(learner, seed=2)
    run.policy_version += 1
    again = run.sync.push(run.roles.learners, run.roles.rollout, run.policy_version)
    assert again["sync/seconds_group"] == 0.0 and probe(run)["sync/max_logprob_diff"] <= 1e-4
