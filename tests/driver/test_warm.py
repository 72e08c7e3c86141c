"""Roles kept between runs (driver/warm.py), on real actors: a run on kept roles gives exactly
the numbers of a run on fresh ones, and a run that wants other roles gets fresh ones."""

from __future__ import annotations

import os
import signal

import pytest
import ray

from rlaif_ray.driver.run import train_run
from rlaif_ray.driver.warm import WarmRoles
from rlaif_ray.run_dir import read_metrics

SHORT = ("run.iterations=2", "data.prompts_per_iteration=8", "ppo.minibatch_size=16", "rollout.num_actors=1")
COMPARED = ("reward/mean", "kl/mean", "loss/policy", "loss/value", "entropy", "response_length/mean")


def pids(warm: WarmRoles) -> set[int]:
    return {ray.get(a.__ray_call__.remote(lambda _self: os.getpid())) for p in warm.kept.values() for a in p.actors}


@pytest.mark.slow
def test_kept_roles_give_the_numbers_of_fresh_ones(ray_local, make_config, tmp_path, capfd):
    warm = WarmRoles()
    try:
        cfg = make_config(*SHORT)
        train_run(cfg, tmp_path / "fresh", progress=False, warm=warm)
        assert {k[0] for k in warm.kept} == {"rollout", "labeler", "reference", "learner"}
        first = pids(warm)
        train_run(cfg, tmp_path / "kept", progress=False, warm=warm)
        assert pids(warm) == first  # the same processes served the second run
        fresh, kept = read_metrics(tmp_path / "fresh"), read_metrics(tmp_path / "kept")
        for a, b in zip(fresh, kept, strict=True):
            assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}
        assert kept[0]["sync/max_logprob_diff"] <= 1e-4  # the kept engines got the fresh learner's weights
        assert "(kept from the last run: rollout, labeler, reference, learner)" in capfd.readouterr().err
        assert (tmp_path / "kept" / "logs" / "rollout-0.log").exists()

        # Another labeler KV cache: the labeler starts anew, the others are kept; GRPO's
        # learners (no critic) come from the same group.
        grpo = make_config(*SHORT, "ppo.algorithm=grpo", "labeler.kv_cache_mib=96")
        train_run(grpo, tmp_path / "grpo", progress=False, warm=warm)
        assert "(kept from the last run: rollout, reference, learner)" in capfd.readouterr().err
        assert all("loss/value" not in r for r in read_metrics(tmp_path / "grpo"))

        # A kept actor killed while idle (by PID, from outside): that role starts anew.
        rollout = next(p for k, p in warm.kept.items() if k[0] == "rollout")
        os.kill(ray.get(rollout.actors[0].__ray_call__.remote(lambda _self: os.getpid())), signal.SIGKILL)
        train_run(grpo, tmp_path / "again", progress=False, warm=warm)
        err = capfd.readouterr().err
        assert "rollout: an actor kept from the last run is gone; starting the role anew" in err
        assert "(kept from the last run: labeler, reference, learner)" in err
        assert [r["reward/mean"] for r in read_metrics(tmp_path / "again")] == [
            r["reward/mean"] for r in read_metrics(tmp_path / "grpo")]
    finally:
        warm.shutdown()
