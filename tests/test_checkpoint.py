"""Checkpoint manifests on real files: a folder staged like a learner's (torch .pt files,
a safetensors HF export, JSON), committed by the real `commit`, then damaged on disk."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rlaif_ray import checkpoint as ckpt
from rlaif_ray.run_dir import RunDirError

PT = "learner/policy/mp_rank_00_model_states.pt"
OPTIM = "learner/policy/zero_pp_rank_0_mp_rank_00_optim_states.pt"


def _write(run_dir: Path, iteration: int, keep: int = 5) -> Path:
    """A checkpoint as save_checkpoint writes one: staged learner files, then commit()."""
    staging = ckpt.staging_dir(run_dir, iteration)
    (staging / "learner" / "policy").mkdir(parents=True)
    torch.save({"module": {"w": torch.randn(64, 64)}}, staging / PT)
    torch.save({"optimizer": {"exp_avg": torch.randn(64, 64)}}, staging / OPTIM)
    (staging / "hf").mkdir()
    from safetensors.torch import save_file

    save_file({"w": torch.randn(32, 32)}, str(staging / "hf" / "model.safetensors"))
    (staging / "hf" / "config.json").write_text(json.dumps({"model_type": "toy"}))
    state = {"iteration": iteration, "policy_version": iteration, "data": {"position": 4 * iteration},
             "kl_controller": {"coef": 0.02}, "redone_prompts": 0, "seed": 0}
    return ckpt.commit(staging, state, keep, timing={"save_s": 0.5})


def _truncate(path: Path, keep_bytes: int | None = None) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2 if keep_bytes is None else keep_bytes)


def test_commit_writes_a_manifest_of_every_file(tmp_path):
    final = _write(tmp_path, 2)
    assert final == tmp_path / "checkpoints" / "iter-000002"
    assert not list((tmp_path / "checkpoints").glob(".staging-*"))
    manifest = json.loads((final / ckpt.MANIFEST_FILE).read_text())
    on_disk = sorted(str(p.relative_to(final)) for p in final.rglob("*") if p.is_file() and p.name != ckpt.MANIFEST_FILE)
    assert sorted(manifest["files"]) == on_disk and "state.json" in on_disk and PT in on_disk
    assert manifest["files"][PT]["size"] == (final / PT).stat().st_size
    assert len(manifest["files"][PT]["sha256"]) == 64
    assert manifest["seconds"]["save_s"] == 0.5 and manifest["seconds"]["hash_s"] >= 0
    assert ckpt.verify_checkpoint(final) == []


def test_truncated_pt_is_named_and_resume_falls_back_to_the_previous(tmp_path):
    _write(tmp_path, 2)
    newest = _write(tmp_path, 4)
    _truncate(newest / PT)
    problems = ckpt.verify_checkpoint(newest)
    assert len(problems) == 1 and problems[0].startswith(f"{PT}: ") and "truncated" in problems[0]
    chosen, warnings = ckpt.choose_resume_checkpoint(tmp_path)
    assert chosen == tmp_path / "checkpoints" / "iter-000002"
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "iter-000004" in warnings[0] and PT in warnings[0] and "resuming from iter-000002" in warnings[0]


def test_same_size_corruption_missing_file_and_bad_state(tmp_path):
    cp = _write(tmp_path, 2)
    data = bytearray((cp / OPTIM).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (cp / OPTIM).write_bytes(bytes(data))
    (cp / "hf" / "config.json").unlink()
    assert ckpt.verify_checkpoint(cp) == ["hf/config.json: missing", f"{OPTIM}: sha256 differs from the manifest (corrupted)"]
    cp4 = _write(tmp_path, 4)
    (cp4 / "state.json").write_text("{\"iteration\": 4, ")  # shorter: the size already tells
    assert [p.split(":")[0] for p in ckpt.verify_checkpoint(cp4)] == ["state.json"]
    cp6 = _write(tmp_path, 6)
    (cp6 / ckpt.MANIFEST_FILE).write_text("{\"files\": ")
    assert ckpt.verify_checkpoint(cp6)[0].startswith(f"{ckpt.MANIFEST_FILE}: unreadable (JSONDecodeError")


def test_no_intact_checkpoint_is_one_line_error_naming_each(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint in"):
        ckpt.choose_resume_checkpoint(tmp_path)
    a, b = _write(tmp_path, 2), _write(tmp_path, 4)
    _truncate(a / PT)
    (b / "state.json").unlink()
    with pytest.raises(RunDirError) as err:  # the CLI's exit-2 kind of error
        ckpt.choose_resume_checkpoint(tmp_path)
    message = str(err.value)
    assert isinstance(err.value, ckpt.CheckpointError) and "\n" not in message
    assert "no intact checkpoint" in message and f"iter-000002: {PT}: " in message
    assert "iter-000004: state.json: missing" in message


def test_checkpoint_without_manifest_is_checked_by_structure(tmp_path):
    """An older version's checkpoint (no manifest): accepted with a warning if its files are
    readable; a truncated .pt, .safetensors or state.json is still found and named."""
    old = _write(tmp_path, 2)
    (old / ckpt.MANIFEST_FILE).unlink()
    assert ckpt.verify_checkpoint(old) == []
    chosen, warnings = ckpt.choose_resume_checkpoint(tmp_path)
    assert chosen == old and len(warnings) == 1 and "no manifest.json" in warnings[0]
    _truncate(old / PT, keep_bytes=(old / PT).stat().st_size - 10)
    _truncate(old / "hf" / "model.safetensors")
    (old / "state.json").write_text("{\"iteration\": 2, ")
    problems = ckpt.verify_checkpoint(old)
    assert [p.split(":")[0] for p in problems] == ["hf/model.safetensors", PT, "state.json"], problems
    assert "JSONDecodeError" in problems[2]


def test_commit_refuses_a_broken_staged_file_and_keeps_the_previous(tmp_path):
    good = _write(tmp_path, 2)
    staging = ckpt.staging_dir(tmp_path, 4)
    (staging / "learner" / "policy").mkdir(parents=True)
    torch.save({"w": torch.randn(64, 64)}, staging / PT)
    _truncate(staging / PT)
    with pytest.raises(ckpt.CheckpointError, match=PT):
        ckpt.commit(staging, {"iteration": 4}, keep=2)
    assert ckpt.list_checkpoints(tmp_path) == [good] and ckpt.verify_checkpoint(good) == []


def test_pruning_keeps_the_newest_and_drops_a_redone_future(tmp_path):
    for i in (1, 2, 3, 4):
        _write(tmp_path, i, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["iter-000003", "iter-000004"]
    # Resumed from iter-000003 because iter-000004 was damaged: iteration 4 was redone, and
    # the next checkpoints replace the stale one instead of leaving it as the "newest".
    _truncate(tmp_path / "checkpoints" / "iter-000004" / PT)
    assert ckpt.choose_resume_checkpoint(tmp_path)[0].name == "iter-000003"
    _write(tmp_path, 4, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["iter-000003", "iter-000004"]
    assert ckpt.verify_checkpoint(tmp_path / "checkpoints" / "iter-000004") == []
    # A resume from iter-000003 that checkpoints every 2 iterations from 5 on: iter-000004 is stale at 5.
    _write(tmp_path, 3, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["iter-000003"]


def test_should_checkpoint_by_minutes(tmp_path):
    from rlaif_ray.driver.resume import should_checkpoint

    (tmp_path / "config.yaml").write_text("run: {}\n")
    section = SimpleNamespace(iterations=100, checkpoint_every=0, checkpoint_every_minutes=5.0)
    run = SimpleNamespace(cfg=SimpleNamespace(run=section), iteration=3, run_dir=tmp_path, checkpoint_clock=None)
    assert not should_checkpoint(run)  # the run dir was created just now
    run = SimpleNamespace(cfg=SimpleNamespace(run=section), iteration=3, run_dir=tmp_path, checkpoint_clock=None)
    past = time.time() - 6 * 60
    os.utime(tmp_path / "config.yaml", (past, past))
    assert should_checkpoint(run)  # 6 minutes since the start, nothing saved yet
    run.checkpoint_clock = time.monotonic()  # as save_checkpoint / restore set it
    assert not should_checkpoint(run)
    run.checkpoint_clock -= 5 * 60
    assert should_checkpoint(run)
    section.checkpoint_every_minutes = 0
    assert not should_checkpoint(run)
    # A count replaces the clock: 5 minutes are due, but only every 4th iteration checkpoints.
    section.checkpoint_every, section.checkpoint_every_minutes, run.iteration = 4, 5.0, 6
    assert not should_checkpoint(run)
    run.iteration = 8
    assert should_checkpoint(run)
    section.checkpoint_every, run.iteration = 0, 100
    assert should_checkpoint(run)  # always at the end
