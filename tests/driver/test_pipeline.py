"""The pipeline's mechanics (rlaif_ray/driver/pipeline.py) on real Ray actors: small Python
actors stand in for the rollout engines, the labeler and the learners, so what is checked is
the order of calls, not numbers: a chunk is scored while a slower one still generates, k
batches are generated ahead at the version current when they start, a replaced engine's rows
carry its newer version, and a checkpoint's batches come back exactly. Plus the pure pieces
(`cut`, `staleness`) by hand, and `resources.cpu_affinity` seen from inside an actor."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
import weakref
from types import SimpleNamespace

import numpy as np
import pytest
import ray

from rlaif_ray.batch import build_shard
from rlaif_ray.config import Resources
from rlaif_ray.data import Prompt
from rlaif_ray.driver.calls import CallPolicy, Recovery
from rlaif_ray.driver.pipeline import PENDING_FILE, Batch, Chunk, Pipeline, cut, staleness
from rlaif_ray.driver.pools import ActorPool

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


SLOW_S = 3.0  # rollout-1's generation: far longer than a dispatch, even on 2 loaded cores


class Engine:
    """Generates one sample per prompt, response = [prompt position]; actor 1 is slow."""

    def __init__(self, rank: int, version: int = 0):
        self.rank, self.version = rank, version

    def ping(self) -> str:
        return f"rollout-{self.rank}"

    def pid(self) -> int:
        return os.getpid()

    def load(self, version: int) -> None:
        self.version = version

    @ray.method(num_returns=2)
    def generate(self, items, version):
        assert version <= self.version
        time.sleep(SLOW_S if self.rank == 1 else 0.05)
        shard = build_shard([list(ids) for _, ids, _ in items], [[i] for i, _, _ in items], [[-0.5]] * len(items),
                            [i for i, _, _ in items], [0] * len(items), [t for _, _, t in items], ["r"] * len(items),
                            max_response_len=1, policy_version=self.version)
        return shard, {"seconds": 0.0, "tokens": len(items), "policy_version": self.version, "done_at": time.time()}


class Labeler:
    def ping(self) -> str:
        return "labeler"

    @ray.method(num_returns=2)
    def direct_rewards(self, shard_refs):
        started_at = time.time()  # before reading the shards (the first read imports torch)
        shards = ray.get(list(shard_refs))
        return np.concatenate([s.prompt_index for s in shards]).astype(np.float32), {"seconds": 0.0, "started_at": started_at}


def make_run(ray_local, k: int, iterations: int = 4, prompts: int = 4):
    policy = CallPolicy(timeout_s=60.0, max_restarts=2, startup_timeout_s=60.0)
    recovery = Recovery()
    rollout = ActorPool("rollout", Engine, Resources(num_cpus=0.01), 2, lambda r: (r,), {}, 60.0, policy=policy, recovery=recovery)
    labeler = ActorPool("labeler", Labeler, Resources(num_cpus=0.01), 1, lambda r: (), {}, 60.0, policy=policy, recovery=recovery)
    for pool in (rollout, labeler):  # started, so that timings below are not start-up's
        pool.wait_ready(60.0)
    stream = SimpleNamespace(position=0)

    def take(n):
        out = [Prompt(stream.position + j, f"p{stream.position + j}", [1, 2]) for j in range(n)]
        stream.position += n
        return out
    stream.take = take
    cfg = SimpleNamespace(max_staleness=k, chunk_prompts=None,
                          run=SimpleNamespace(iterations=iterations), data=SimpleNamespace(prompts_per_iteration=prompts))
    roles = SimpleNamespace(rollout=rollout, labeler=labeler, reference=None, scorers=None, learners=None)
    run = FakeRun(cfg=cfg, roles=roles, stream=stream, iteration=0, policy_version=0)
    run.pipeline = Pipeline(run)
    return run


class FakeRun(SimpleNamespace):
    """The parts of a RunState the pipeline reads (a class: it holds the run by weak proxy)."""


@pytest.fixture
def pipelined(ray_local):
    runs = []

    def make(k, **kw):
        runs.append(make_run(ray_local, k, **kw))
        return runs[-1]
    yield make
    for r in runs:
        r.roles.rollout.shutdown()
        r.roles.labeler.shutdown()


def test_a_finished_run_is_freed_at_once():
    # Its weight sync holds the newest weights in the object store (hundreds of MB for a real
    # model): they must go with the run, not whenever the cyclic GC comes by.
    from rlaif_ray.driver.train import RunState

    gc.disable()
    try:
        run = RunState(None, None, None, None, None, [])
        gone = weakref.ref(run)
        del run
        assert gone() is None
    finally:
        gc.enable()


def test_cut_keeps_prompts_whole_and_defaults_to_one_chunk_per_actor():
    prompts = [Prompt(i, f"p{i}", [i]) for i in range(5)]
    assert [[i for i, _, _ in c] for c in cut(prompts, 2, None)] == [[0, 1, 2], [3, 4]]  # np.array_split
    assert [[i for i, _, _ in c] for c in cut(prompts, 2, 2)] == [[0, 1], [2, 3], [4]]
    assert [[i for i, _, _ in c] for c in cut(prompts[:1], 4, None)] == [[0]]  # no empty chunks


def test_staleness_by_hand():
    # Chunks of 3 and 1 prompts from versions 2 and 4, trained by v4: lags 2, 2, 2, 0.
    batch = Batch(5, 2, [], [Chunk([(0, [], "")] * 3, version=2), Chunk([(3, [], "")], version=4)])
    assert staleness(batch, 4) == {"pipeline/staleness/mean": 1.5, "pipeline/staleness/max": 2}


def test_a_chunk_is_scored_while_a_slower_one_still_generates(pipelined):
    run = pipelined(0)
    run.pipeline.fill()
    batch = run.pipeline.generated()
    scored = run.pipeline.scored(batch)
    fast, slow = batch.chunks  # actor 0 (fast) got prompts 0-1, actor 1 (slow) 2-3
    assert fast.scores["labeler"].value["started_at"] < slow.gen.value["done_at"]
    assert np.concatenate(ray.get(scored["rewards"])).tolist() == [0, 1, 2, 3]  # chunk order = prompt order


def test_k_batches_are_generated_ahead_at_the_version_of_their_start(pipelined):
    run = pipelined(1, iterations=3)
    run.pipeline.fill()
    assert [b.iteration for b in run.pipeline.batches] == [1, 2] and run.stream.position == 8
    first = run.pipeline.generated()
    run.policy_version = 1  # what the sync after training does, engines included
    run.roles.rollout.call_all("load", 1)
    run.iteration = 1
    run.pipeline.fill()
    assert [(b.iteration, b.version) for b in run.pipeline.batches] == [(2, 0), (3, 1)]
    second = run.pipeline.generated()
    assert staleness(first, 0)["pipeline/staleness/max"] == 0 and staleness(second, 1)["pipeline/staleness/max"] == 1
    run.iteration = 2
    run.pipeline.fill()  # never past run.iterations
    assert [b.iteration for b in run.pipeline.batches] == [3]


def test_a_replaced_engine_generates_with_its_newer_weights(pipelined):
    run = pipelined(0)
    run.roles.rollout.on_replace = lambda actor, name: ray.get(actor.load.remote(7))
    os.kill(run.roles.rollout.call(0, "pid"), signal.SIGKILL)
    run.pipeline.fill()
    batch = run.pipeline.generated()
    assert [c.version for c in batch.chunks] == [7, 0]
    assert run.roles.rollout.recovery.metrics()["recovery/rollout/restarts"] == 1


def test_batches_generated_ahead_survive_a_checkpoint(pipelined, tmp_path):
    run = pipelined(1)
    run.pipeline.fill()
    run.pipeline.generated()
    run.pipeline.save(tmp_path)
    assert (tmp_path / PENDING_FILE).exists()
    restored = pipelined(1)
    restored.pipeline.load(tmp_path)
    (batch,) = restored.pipeline.batches
    assert batch.iteration == 2 and [p.index for p in batch.prompts] == [4, 5, 6, 7]
    scored = restored.pipeline.scored(restored.pipeline.generated())
    assert np.concatenate(ray.get(scored["rewards"])).tolist() == [4, 5, 6, 7]
    restored.pipeline.load(None)
    assert not restored.pipeline.batches


class Cores:
    def ping(self) -> str:
        return "cores"

    def cores(self) -> tuple[list[int], int]:
        import torch

        return sorted(os.sched_getaffinity(0)), torch.get_num_threads()


def test_cpu_affinity_pins_an_actor_and_sizes_its_threads(ray_local):
    core = sorted(os.sched_getaffinity(0))[-1]
    pool = ActorPool("pinned", Cores, Resources(num_cpus=0.01, cpu_affinity=[core]), 1, lambda r: (), {}, 60.0)
    try:
        assert pool.call(0, "cores") == ([core], 1)
    finally:
        pool.shutdown()
