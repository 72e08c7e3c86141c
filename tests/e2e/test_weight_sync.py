"""Weight sync on live engines: after a real PPO update the rollout engines serve exactly the
learner's weights, and the probe catches a load that skipped the prefix-cache reset."""

from __future__ import annotations

import dataclasses
import logging
import tracemalloc

import pytest
import ray

from rlaif_ray.algorithms import make_kl_controller
from rlaif_ray.data import PromptStream, load_prompts
from rlaif_ray.driver.roles import running_roles
from rlaif_ray.weight_sync.driver import make_weight_sync
from rlaif_ray.driver.train import RunState, probe, run_iteration, serve_start_weights
from rlaif_ray.modeling import load_tokenizer
from rlaif_ray.prompts import PromptFormatter
from rlaif_ray.weight_sync.probe import probe_prompt
from rlaif_ray.errors import RunStopped


@pytest.fixture(scope="module")
def run(warm_roles, make_config):
    # A KV cache with room to spare (the default holds one call's sequences and no more), so the
    # probe prompt's cached prefix outlives the next generation: the stale-cache test needs it.
    cfg = make_config("data.prompts_per_iteration=4", "ppo.minibatch_size=16", "ppo.epochs=2",
                      "learner.lr=1e-3", "rollout.kv_cache_mib=64")
    tok = load_tokenizer(cfg.model.policy)
    stream = PromptStream(load_prompts(cfg.data.source, "prompt"), PromptFormatter(tok, False, None, "policy"),
                          64, "truncate", 0)
    with running_roles(cfg, warm=warm_roles) as roles:
        state = RunState(cfg, roles, stream, make_kl_controller("fixed", 0.02), make_weight_sync(cfg.sync, roles.rollout),
                         probe_prompt(tok))
        serve_start_weights(state)
        yield state


@pytest.mark.slow
def test_engines_match_learner_after_update(run):
    row = run_iteration(run)  # generate, score, PPO update, sync, probe
    assert row["policy_version"] == 1 and row["sync/max_logprob_diff"] <= 1e-4
    prompts = [p.token_ids for p in run.stream.take(3)]
    learner = ray.get(run.roles.learners.actors[0].generate_greedy.remote(prompts, 12))
    for actor in run.roles.rollout.actors:
        assert ray.get(actor.generate_greedy.remote(prompts, 12)) == learner


@pytest.mark.slow
def test_probe_catches_stale_prefix_cache(run, caplog):
    run_iteration(run)
    probe(run)  # the probe prompt's KV is now in engine 0's prefix cache, for these weights
    # One more update, loaded WITHOUT resetting the prefix cache.
    from rlaif_ray.driver import train as stages

    # An iteration up to its sync: the learner moves, the engines are not told. The sync is
    # done by hand below.
    run.pipeline.fill()
    stages.ppo_step(run, run.pipeline.scored(run.pipeline.generated()))
    run.iteration += 1
    run.policy_version += 1
    payload = ray.get([l.weight_sender.remote("put") for l in run.roles.learners.actors])[0]
    engine0 = run.roles.rollout.actors[0]
    ray.get(engine0.weight_receiver.remote("load", payload, run.policy_version, False))  # no prefix-cache reset
    with caplog.at_level(logging.WARNING, logger="rlaif_ray"):
        stale = probe(run)["sync/max_logprob_diff"]  # sync.probe_action: warn (the default)
    assert any("rollout-0" in r.getMessage() and "probe" in r.getMessage() for r in caplog.records)
    stop = run.cfg.model_copy(update={"sync": run.cfg.sync.model_copy(update={"probe_action": "stop"})})
    with pytest.raises(RunStopped, match=r"rollout-0 and the learner differ by"):
        probe(dataclasses.replace(run, cfg=stop))
    ray.get(engine0.weight_receiver.remote("load", payload, run.policy_version))
    fresh = probe(run)["sync/max_logprob_diff"]
    print(f"probe diff with a stale prefix cache {stale:.2e}, after the reset {fresh:.2e}")
    assert fresh <= 1e-4
    assert stale > 1e-3, "the probe did not see KV left over from the old weights"
    ray.get([a.weight_receiver.remote("load", payload, run.policy_version) for a in run.roles.rollout.actors[1:]])


@pytest.mark.slow
def test_driver_memory_does_not_grow_with_batch(run):
    """The driver holds refs, not batches: its Python peak during an iteration stays flat
    when the batch is 8× larger."""
    def peak_of_iteration(prompts_per_iteration: int) -> int:
        run.cfg = run.cfg.model_copy(update={"data": run.cfg.data.model_copy(
            update={"prompts_per_iteration": prompts_per_iteration})})
        tracemalloc.start()
        run_iteration(run)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    peak_of_iteration(4)  # warm-up: first-call allocations
    small, large = peak_of_iteration(4), peak_of_iteration(32)
    print(f"driver peak: {small / 2**10:.0f} KiB at 16 samples, {large / 2**10:.0f} KiB at 128 samples")
    # 128 samples × (prompt+response ids + logprobs) would be > 100 KiB if fetched.
    assert large < small * 1.5 + 64 * 2**10
