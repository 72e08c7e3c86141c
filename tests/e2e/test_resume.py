"""Exact resume: 4 iterations straight vs 3 + resume from the checkpoint at 2 + 2 see the
same prompts in the same order, continue the numbering, reach the same numbers, and describe
iterations 1..4 once each (summary.json, TensorBoard)."""

from __future__ import annotations

import json
import shutil

import pytest

from rlaif_ray.checkpoint import latest_checkpoint
from rlaif_ray.driver.run import train_run
from rlaif_ray.run_dir import read_metrics

from shared_runs import CHECKPOINTED


def _prompts(run_dir):
    return [json.loads(l) for l in (run_dir / "prompts.jsonl").read_text().splitlines()]


COMMON = CHECKPOINTED
NUMBERS = ("reward/mean", "kl/mean", "loss/policy", "response_length/mean")


@pytest.fixture
def straight(checkpointed_run):
    """4 iterations without interruption (tests/e2e/conftest.py): what the resumed and restarted runs must match."""
    return checkpointed_run


@pytest.mark.slow
def test_resume_continues_exactly(straight, warm_roles, make_config, tmp_path):
    common = COMMON
    shutil.copytree(straight, tmp_path / "straight")
    split = tmp_path / "split"
    train_run(make_config("run.iterations=3", *common), split, progress=False, warm=warm_roles)
    # As if the process died after logging iteration 3 but before its checkpoint: the resumed
    # run redoes 3 from the checkpoint at 2.
    shutil.rmtree(latest_checkpoint(split))
    train_run(make_config("run.iterations=4", *common), split, resume=True, progress=False, warm=warm_roles)

    a, b = read_metrics(tmp_path / "straight"), read_metrics(split)
    assert [r["iteration"] for r in b] == [1, 2, 3, 4]
    assert [r["policy_version"] for r in b] == [1, 2, 3, 4]
    pa, pb = _prompts(tmp_path / "straight"), _prompts(split)
    assert [p["positions"] for p in pa] == [p["positions"] for p in pb] == [[4 * i + k for k in range(4)] for i in range(4)]
    assert [p["prompts"] for p in pa] == [p["prompts"] for p in pb]
    # The samples shown are chosen by (seed, iteration): a resumed run shows the same rows.
    key = lambda r: (r["iteration"], r["prompt_index"], r["sample_index"], r["prompt"])
    sa, sb = ([key(json.loads(l)) for l in (d / "samples.jsonl").read_text().splitlines()] for d in (tmp_path / "straight", split))
    assert sa == sb and [k[0] for k in sa] == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4
    for ra, rb in zip(a, b):
        for key in NUMBERS:
            print(ra["iteration"], key, ra[key], rb[key])
            assert abs(ra[key] - rb[key]) <= 1e-4, (ra["iteration"], key, ra[key], rb[key])
    # The whole run, not only the resumed part: summary.json and TensorBoard show 1..4 once each.
    sum_a, sum_b = (json.loads((d / "summary.json").read_text()) for d in (tmp_path / "straight", split))
    assert sum_a["iterations"] == sum_b["iterations"] == 4
    for key in ("reward_first", "reward_last", "kl_last"):
        assert abs(sum_a[key] - sum_b[key]) <= 1e-4, (key, sum_a[key], sum_b[key])
    assert [r["iteration"] for r in map(json.loads, (split / "metrics.discarded.jsonl").read_text().splitlines())] == [3]
    tb_a, tb_b = _tensorboard_scalars(tmp_path / "straight"), _tensorboard_scalars(split)
    assert [s for s, _ in tb_b["reward/mean"]] == [1, 2, 3, 4]
    for (sa_, va), (sb_, vb) in zip(tb_a["reward/mean"], tb_b["reward/mean"]):
        assert sa_ == sb_ and abs(va - vb) <= 1e-4


@pytest.mark.slow
def test_lost_learner_is_rebuilt_from_the_checkpoint(straight, warm_roles, make_config, tmp_path):
    """SIGKILL of learner-1 at its first call of iteration 4: the group is rebuilt from the
    checkpoint at 2, iterations 3 and 4 are redone, and the run ends with the uninterrupted
    run's numbers. (A fault at iteration 3 would strike the checkpoint save of iteration 2,
    the first learner call after it: the case of the next test.)"""
    run_dir = tmp_path / "run"
    train_run(make_config("run.iterations=4", *COMMON, "chaos.faults=[{role: learner, actor: 1, iteration: 4}]"),
              run_dir, progress=False, warm=warm_roles)
    b = same_numbers(read_metrics(straight), read_metrics(run_dir))
    assert b[-1]["recovery/learner/restarts"] == 1 and b[-1]["recovery/learner/redone_prompts"] == 8
    assert "sync/max_logprob_diff" in b[2] and b[2]["sync/max_logprob_diff"] <= 1e-4  # probed after the rebuild
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 4
    assert [s for s, _ in _tensorboard_scalars(run_dir)["reward/mean"]] == [1, 2, 3, 4]


@pytest.mark.slow
def test_lost_learner_before_any_checkpoint_starts_the_run_over(straight, warm_roles, make_config, tmp_path):
    """No checkpoint yet (checkpoints by the clock, none due in a short run): the rebuilt
    group holds the starting weights, the run starts over and still ends with the numbers."""
    run_dir = tmp_path / "run"
    train_run(make_config("run.iterations=4", *COMMON, "run.checkpoint_every=0",
                          "chaos.faults=[{role: learner, actor: 0, iteration: 2}]"), run_dir, progress=False, warm=warm_roles)
    b = same_numbers(read_metrics(straight), read_metrics(run_dir))
    assert b[-1]["recovery/learner/restarts"] == 1 and b[-1]["recovery/learner/redone_prompts"] == 8
    assert [r["iteration"] for r in map(json.loads, (run_dir / "metrics.discarded.jsonl").read_text().splitlines())] == [1]


def same_numbers(a: list[dict], b: list[dict]) -> list[dict]:
    """Asserts run b logged iterations 1..4 once each with run a's numbers; returns b."""
    assert [r["iteration"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for key in NUMBERS:
            assert abs(ra[key] - rb[key]) <= 1e-4, (ra["iteration"], key, ra[key], rb[key])
    return b


def _tensorboard_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} as TensorBoard's Python backend shows the run's event files."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, float(make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
            for tag in events.Tags()["tensors"] if tag != "samples/text_summary"}
