"""Bad input through the real CLI: one clear message naming the field, exit 2, no traceback,
and nothing already written is touched. All of these fail before Ray starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlaif_ray.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def assert_clean_failure(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in proc.stderr, proc.stderr


@pytest.fixture
def good_args(tiny_models, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about the lake {i}."}) + "\n" for i in range(8)))
    return ["--config", str(REPO / "configs/local.yaml"), "--set", f"model.policy={tiny_models['policy']}",
            "--set", f"model.labeler={tiny_models['labeler']}", "--set", f"data.source={prompts}"]


def test_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  seed: [1, 2\n")
    assert_clean_failure(run_cli("train", "--config", str(bad)), "malformed YAML")


def test_unknown_key_and_wrong_type(tmp_path):
    proc = run_cli("config", "validate", str(REPO / "configs/local.yaml"), "--set", "ppo.cliip=0.1",
                   "--set", "rollout.num_actors=two")
    assert_clean_failure(proc, "ppo.cliip: unknown key", "rollout.num_actors")


def test_missing_model_path(tmp_path):
    proc = run_cli("train", "--config", str(REPO / "configs/local.yaml"), "--run-dir", str(tmp_path / "r"),
                   "--set", "model.policy=./no/such/model")
    assert_clean_failure(proc, "model.policy", "does not exist")
    assert not (tmp_path / "r").exists()


def test_dataset_without_prompt_column(good_args, tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "hi"}) + "\n")
    proc = run_cli("train", *good_args, "--set", f"data.source={data}", "--run-dir", str(tmp_path / "r"))
    assert_one_line(proc, "data.prompt_column", str(data), "question")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- bad prompt files


def assert_one_line(proc, *needles: str) -> None:
    """Exit 2 with a single `rlaif-ray: ...` line holding every needle (no traceback)."""
    assert_clean_failure(proc, *needles)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlaif-ray: "), proc.stderr


def _lines(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


GOOD = [{"prompt": f"Tell me about the lake {i}."} for i in range(6)]

# name -> (file name, bytes, what the message must say after the file's path). One broken
# file and one bad record: every other kind of bad file gets the same treatment from the CLI,
# and its message is checked in process (tests/test_data.py), ~10 s cheaper a case.
BAD_PROMPT_FILES = {
    "malformed_line": ("p.jsonl", _lines(*GOOD[:3], '{"prompt": "a"', *GOOD[3:]).encode(),
                       " line 4: malformed JSON"),
    "number_prompt": ("p.jsonl", _lines(*GOOD[:2], {"prompt": 42}, *GOOD[2:]).encode(),
                      " line 3 (prompt): a prompt must be text or a list of {role, content} messages, got int"),
}


@pytest.mark.parametrize("case", list(BAD_PROMPT_FILES))
def test_train_bad_prompt_file_is_one_line(case, good_args, tmp_path):
    """Refused before Ray starts, the file and line named, nothing written to the run dir."""
    name, content, says = BAD_PROMPT_FILES[case]
    data = tmp_path / name
    data.write_bytes(content)
    proc = run_cli("train", *good_args, "--set", f"data.source={data}", "--run-dir", str(tmp_path / "r"))
    assert_one_line(proc, f"data.source: {data}{says}")
    assert not (tmp_path / "r").exists()


def test_eval_and_rejection_sampling_name_the_bad_line(tiny_models, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text(_lines(*GOOD[:3], '{"prompt": "a"', *GOOD[3:]))
    out = tmp_path / "out"
    proc = run_cli("eval", "--config", str(REPO / "configs/eval-toy.yaml"), "--set", f"eval.policy_a={tiny_models['policy']}",
                   "--set", f"model.policy={tiny_models['policy']}", "--set", f"model.labeler={tiny_models['labeler']}",
                   "--set", f"eval.prompts={data}", "--set", "eval.run_dirs=[]", "--set", f"eval.output_dir={out}")
    assert_one_line(proc, f"eval.prompts: {data} line 4: malformed JSON")
    assert not out.exists()
    proc = run_cli("rejection-sampling", "--config", str(REPO / "configs/rejection-sampling-toy.yaml"),
                   "--set", f"model.policy={tiny_models['policy']}", "--set", f"model.labeler={tiny_models['labeler']}",
                   "--set", f"data.source={data}", "--set", f"rejection_sampling.output_dir={out}")
    assert_one_line(proc, f"data.source: {data} line 4: malformed JSON")
    assert not out.exists()


def test_all_prompts_too_long_are_dropped(good_args, tmp_path):
    proc = run_cli("train", *good_args, "--set", "data.max_prompt_tokens=2", "--set", "data.long_prompts=drop",
                   "--run-dir", str(tmp_path / "r"))
    assert_clean_failure(proc, "data.max_prompt_tokens")


def test_run_dir_with_another_run_is_refused(good_args, tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("run: {name: older}\n")
    (run_dir / "metrics.jsonl").write_text('{"iteration": 1}\n')
    proc = run_cli("train", *good_args, "--run-dir", str(run_dir))
    assert_clean_failure(proc, "already holds a run", "--resume", "--overwrite")
    assert (run_dir / "metrics.jsonl").read_text() == '{"iteration": 1}\n'  # untouched
