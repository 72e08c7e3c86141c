"""`rlaif-ray sweep` (driver/sweep.py): the plan of combinations and its refusals, and the
real command on the tiny models, where every run after the first takes the roles the run
before kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlaif_ray.config import ConfigError
from rlaif_ray.driver.sweep import format_table, parse_vary, plan_sweep

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "configs" / "local.yaml"


def test_vary_takes_yaml_lists_and_refuses_the_rest():
    assert parse_vary(["learner.lr=[1.0e-4, 5.0e-4]", "ppo.algorithm=[grpo]"]) == [
        ("learner.lr", [1e-4, 5e-4]), ("ppo.algorithm", ["grpo"])]
    for bad in ("learner.lr=1.0e-4", "learner.lr=[]", "learner.lr", "=[1]", "learner.lr=[1, 2"):
        with pytest.raises(ConfigError, match="expected KEY=\\[value, value, ...\\]"):
            parse_vary([bad])
    with pytest.raises(ConfigError, match="learner.lr: given twice"):
        parse_vary(["learner.lr=[1]", "learner.lr=[2]"])
    with pytest.raises(ConfigError, match="at least one --vary"):
        parse_vary([])


def test_plan_is_every_combination_validated_up_front():
    runs = plan_sweep(LOCAL, ["run.iterations=2"], parse_vary(["ppo.algorithm=[ppo, grpo]", "learner.lr=[1.0e-4, 1.0e-3]"]))
    assert [r.name for r in runs] == ["algorithm=ppo,lr=0.0001", "algorithm=ppo,lr=0.001",
                                      "algorithm=grpo,lr=0.0001", "algorithm=grpo,lr=0.001"]
    assert [(r.cfg.ppo.algorithm, r.cfg.learner.lr, r.cfg.run.iterations, r.cfg.run.name) for r in runs][3] == (
        "grpo", 1e-3, 2, "algorithm=grpo,lr=0.001")
    # Keys whose last parts clash are named in full.
    both = plan_sweep(LOCAL, [], parse_vary(["rollout.num_actors=[1]", "labeler.num_actors=[1]"]))
    assert both[0].name == "rollout.num_actors=1,labeler.num_actors=1"
    with pytest.raises(ConfigError, match="(?s)sweep run clip=-1: .*ppo.clip: Input should be greater than 0"):
        plan_sweep(LOCAL, [], parse_vary(["ppo.clip=[0.2, -1]"]))
    with pytest.raises(ConfigError, match="sweep run num_cpus=4: its ray section differs"):
        plan_sweep(LOCAL, [], parse_vary(["ray.num_cpus=[2, 4]"]))


def test_table_shows_failed_runs_with_their_error():
    done = {"reward_first": -0.5, "reward_last": 0.25, "kl_last": 0.1, "seconds_per_iteration": 1.5}
    table = format_table([{"name": "lr=0.1", "summary": done, "error": None},
                          {"name": "lr=1", "summary": None, "error": "learner-0 died"}])
    assert table.splitlines()[1].split() == ["lr=0.1", "-0.500", "+0.250", "0.100", "1.50"]
    assert table.splitlines()[2] == "lr=1    failed: learner-0 died"


@pytest.mark.slow
def test_sweep_command_runs_every_combination_on_kept_roles(tiny_models, toy_prompts_file, tmp_path):
    cmd = [str(Path(sys.executable).parent / "rlaif-ray"), "sweep", "--config", str(LOCAL),
           "--set", f"model.policy={tiny_models['policy']}", "--set", f"model.labeler={tiny_models['labeler']}",
           "--set", f"data.source={toy_prompts_file}", "--set", "run.iterations=2", "--set", "rollout.num_actors=1",
           "--set", "data.prompts_per_iteration=8", "--set", "ppo.minibatch_size=16",
           "--vary", "ppo.algorithm=[ppo, rloo]", "--sweep-dir", str(tmp_path / "sweep"), "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(kept from the last run: rollout, labeler, reference, learner)" in done.stderr
    assert "2 of 2 runs done" in done.stdout
    records = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [(r["name"], r["status"], r["summary"]["iterations"]) for r in records] == [
        ("algorithm=ppo", "done", 2), ("algorithm=rloo", "done", 2)]
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "algorithm=rloo" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("loss/value" not in r for r in rows)  # rloo: no critic
    # A second sweep into the same folder is refused before anything starts.
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already holds runs algorithm=ppo, algorithm=rloo" in again.stderr


def test_a_missing_prompt_file_stops_the_sweep_before_ray_starts(tiny_models, toy_prompts_file, tmp_path):
    from rlaif_ray.driver.sweep import sweep_run

    missing = tmp_path / "nowhere.jsonl"
    runs = plan_sweep(LOCAL, [f"model.policy={tiny_models['policy']}", f"model.labeler={tiny_models['labeler']}"],
                      parse_vary([f"data.source=[{toy_prompts_file}, {missing}]"]))
    with pytest.raises(ConfigError, match=f"sweep run source={missing}: .*nowhere.jsonl"):
        sweep_run(runs, tmp_path / "sweep", progress=False)
    assert not (tmp_path / "sweep" / runs[0].name).exists()  # no run started
