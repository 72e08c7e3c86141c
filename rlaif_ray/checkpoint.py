"""Checkpoint directories: staged, renamed into place, pruned; the driver's resumable state.

    RUN_DIR/checkpoints/iter-000004/
        state.json          iteration, policy version, data position, KL controller, seed
        learner/policy/...  DeepSpeed checkpoint (weights + optimiser + its RNG), all ranks
        learner/critic/...  same for the critic (PPO)
        hf/                 the policy in Hugging Face format (+ tokenizer), loadable as is

A checkpoint is written into `.staging-iter-000004` and renamed when complete: a crash
mid-write leaves the previous checkpoint intact, and only renamed folders are ever read.
All learner ranks must see the same filesystem (one node, or a shared volume on clusters).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

STATE_FILE = "state.json"


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def staging_dir(run_dir: Path, iteration: int) -> Path:
    path = checkpoint_root(run_dir) / f".staging-iter-{iteration:06d}"
    if path.exists():  # a leftover from a crash during an earlier attempt
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def commit(staging: Path, state: dict, keep: int) -> Path:
    """Write the driver state last, rename the staged folder into place, prune old ones."""
    (staging / STATE_FILE).write_text(json.dumps(state, indent=2))
    final = staging.parent / staging.name.removeprefix(".staging-")
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    for old in list_checkpoints(staging.parent.parent)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(run_dir)
    if not root.exists():
        return []
    done = [p for p in root.glob("iter-*") if (p / STATE_FILE).exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())
