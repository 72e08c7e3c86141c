"""Checkpoint directories: staged, checksummed, renamed into place, pruned; the driver's
resumable state; checking a checkpoint before a resume uses it.

    RUN_DIR/checkpoints/iter-000004/
        state.json          iteration, policy version, data position, KL controller, seed
        learner/policy/...  DeepSpeed checkpoint (weights + optimiser + its RNG), all ranks
        learner/critic/...  same for the critic (PPO)
        hf/                 the policy in Hugging Face format (+ tokenizer), loadable as is
        manifest.json       every other file's size and sha256 (+ how long the save took)

A checkpoint is written into `.staging-iter-000004`; its manifest is written last, and then
the folder is renamed into place: a crash mid-write leaves the previous checkpoint intact,
and only renamed folders are ever read. All learner ranks and the driver must see the same
filesystem (one node, or a shared volume on clusters).

Before a resume (`choose_resume_checkpoint`, called before Ray starts) the newest checkpoint
is verified against its manifest (every file present, same size, same sha256; state.json
readable); a damaged one is skipped with a one-line warning naming the file, and the
previous intact one is used. A checkpoint without a manifest (written before manifests
existed) is accepted if its structure holds: state.json parses, every `.pt` opens as a zip
archive (torch's format), every `.json` parses, every `.safetensors` is as long as its
header says; a warning says its checksums could not be checked.

sha256 and not a faster checksum: with the SHA extensions of current x86/ARM CPUs hashlib's
sha256 reads 1.7 GB/s per core (measured on this project's CPU machine: sha256 1720 MiB/s,
blake2b 882, crc32 4024), faster than the disks checkpoints are written to, and files
are hashed in parallel threads (hashlib releases the GIL).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlaif_ray.errors import CheckpointError

STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
STATE_KEYS = ("iteration", "policy_version", "data", "kl_controller")
_CHUNK = 8 * 2**20


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def staging_dir(run_dir: Path, iteration: int) -> Path:
    path = checkpoint_root(run_dir) / f".staging-iter-{iteration:06d}"
    if path.exists():  # a leftover from a crash during an earlier attempt
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def commit(staging: Path, state: dict, keep: int, timing: dict | None = None) -> Path:
    """Write the driver state, check the staged files' structure, write the manifest (sizes
    and sha256 of every file) last, rename the staged folder into place, prune old ones.

    Pruning removes all but the `keep` newest checkpoints, and any checkpoint newer than this
    one: after a resume from an older (or the previous intact) checkpoint, those belong to
    iterations this run has redone. `timing` (e.g. {"save_s": 1.2}) goes into the manifest.
    """
    (staging / STATE_FILE).write_text(json.dumps(state, indent=2))
    problems = _structure_problems(staging)
    if problems:  # a learner wrote a broken file (e.g. a full disk): keep the previous checkpoints
        raise CheckpointError(f"checkpoint {staging.name} was written damaged ({_summary(problems)}); "
                              f"the previous checkpoints are kept")
    start = time.perf_counter()
    files = _hash_files(staging, _relative_files(staging))
    manifest = {"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": files,
                "bytes": sum(f["size"] for f in files.values()),
                "seconds": {**(timing or {}), "hash_s": round(time.perf_counter() - start, 3)}}
    _write_durably(staging / MANIFEST_FILE, json.dumps(manifest, indent=1))
    final = staging.parent / staging.name.removeprefix(".staging-")
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    number = _number(final)
    found = _checkpoint_dirs(staging.parent.parent)
    for old in [p for p in found if _number(p) > number] + [p for p in found if _number(p) <= number][:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    return [p for p in _checkpoint_dirs(run_dir) if (p / STATE_FILE).exists()]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())


def read_manifest(checkpoint: Path) -> dict | None:
    """The checkpoint's manifest, or None when it has none (written by an older version).
    Raises ValueError (JSONDecodeError) for an unreadable one."""
    path = Path(checkpoint) / MANIFEST_FILE
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ValueError("no file list")
    return manifest


def verify_checkpoint(path: Path) -> list[str]:
    """What is wrong with the checkpoint folder `path`, one "FILE: what" string per problem
    (FILE relative to `path`); empty: intact.

    With a manifest: every file listed is present with its size and sha256 (sizes of all
    files first, then checksums of those whose size matched). Without one (an older
    version's checkpoint): the structure checks of `commit`. Both: state.json is readable
    and has the driver's state.
    """
    path = Path(path)
    if not path.is_dir():
        return [f"{path.name}: not a folder"]
    try:
        manifest = read_manifest(path)
    except (ValueError, OSError) as err:
        return [f"{MANIFEST_FILE}: unreadable ({type(err).__name__}: {err})"]
    if manifest is None:
        problems = _structure_problems(path)
    else:
        try:
            problems = _manifest_problems(path, manifest["files"])
        except (KeyError, TypeError, AttributeError) as err:  # an entry without size or sha256
            return [f"{MANIFEST_FILE}: unreadable (bad entry: {type(err).__name__}: {err})"]
    if not any(p.startswith(f"{STATE_FILE}:") for p in problems):
        problems += _state_problems(path)
    return problems


def choose_resume_checkpoint(run_dir: Path) -> tuple[Path, list[str]]:
    """The newest intact checkpoint of `run_dir` and one warning line per damaged newer one
    skipped (plus one if the chosen one has no manifest to check it by). Raises
    CheckpointError (one line: each checkpoint and what is wrong with it) if none is intact."""
    run_dir = Path(run_dir)
    found = _checkpoint_dirs(run_dir)
    if not found:
        raise CheckpointError(f"--resume {run_dir}: no checkpoint in {checkpoint_root(run_dir)} "
                              f"(the run stopped before its first one)")
    damaged = []
    for path in reversed(found):
        problems = verify_checkpoint(path)
        if problems:
            damaged.append((path, problems))
            continue
        warnings = [f"checkpoint {p.name} is damaged ({_summary(probs)}); resuming from {path.name} instead"
                    for p, probs in damaged]
        if not (path / MANIFEST_FILE).exists():
            warnings.append(f"checkpoint {path.name} has no {MANIFEST_FILE} (written by an older version): "
                            f"its structure was checked, its checksums could not be")
        return path, warnings
    raise CheckpointError(f"--resume {run_dir}: no intact checkpoint in {checkpoint_root(run_dir)}: "
                          + "; ".join(f"{p.name}: {_summary(probs)}" for p, probs in damaged))


# --------------------------------------------------------------------------- helpers


def _number(path: Path) -> int:
    return int(path.name.split("-")[1])


def _checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Every checkpoint folder renamed into place (whole or since damaged), oldest first."""
    root = checkpoint_root(run_dir)
    if not root.exists():
        return []
    found = [p for p in root.glob("iter-*") if p.is_dir() and p.name.split("-")[1].isdigit()]
    return sorted(found, key=_number)


def _relative_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST_FILE)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_files(folder: Path, names: list[str]) -> dict[str, dict]:
    """{name: {size, sha256}}, the files hashed in parallel threads."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(lambda n: _sha256(folder / n), names))
    return {n: {"size": (folder / n).stat().st_size, "sha256": d} for n, d in zip(names, digests)}


def _write_durably(path: Path, text: str) -> None:
    with path.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _manifest_problems(folder: Path, files: dict) -> list[str]:
    problems, same_size = [], []
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif (size := path.stat().st_size) != entry["size"]:
            problems.append(f"{name}: {size} bytes, the manifest says {entry['size']}"
                            + (" (truncated)" if size < entry["size"] else ""))
        else:
            same_size.append(name)
    if same_size:
        actual = _hash_files(folder, same_size)
        problems += [f"{n}: sha256 differs from the manifest (corrupted)" for n in same_size
                     if actual[n]["sha256"] != files[n]["sha256"]]
    return problems


def _structure_problems(folder: Path) -> list[str]:
    """Cheap checks that catch a truncated file without a manifest: .pt files open as zip
    archives (only the central directory at the end is read), .json files parse,
    .safetensors files are as long as their header says, and the learner state is there."""
    problems = []
    if not any((folder / "learner").rglob("*.pt")):
        problems.append("learner/: no DeepSpeed state (*.pt)")
    for name in _relative_files(folder):
        path = folder / name
        try:
            if name.endswith(".pt"):
                with zipfile.ZipFile(path):
                    pass
            elif name.endswith(".json"):
                json.loads(path.read_text())
            elif name.endswith(".safetensors"):
                _check_safetensors(path)
        except Exception as err:  # any failure to read is the finding
            problems.append(f"{name}: unreadable ({type(err).__name__}: {err})")
    return problems


def _check_safetensors(path: Path) -> None:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    size = path.stat().st_size
    if size != 8 + n + end:
        raise ValueError(f"{size} bytes, its header says {8 + n + end}")


def _state_problems(folder: Path) -> list[str]:
    try:
        state = read_state(folder)
    except (ValueError, OSError) as err:
        return [f"{STATE_FILE}: unreadable ({type(err).__name__}: {err})"]
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        return [f"{STATE_FILE}: no {', '.join(missing)}"]
    if state["iteration"] != _number(folder):
        return [f"{STATE_FILE}: iteration {state['iteration']} in the folder of iteration {_number(folder)}"]
    return []


def _summary(problems: list[str], shown: int = 3) -> str:
    more = len(problems) - shown
    return "; ".join(problems[:shown]) + (f"; and {more} more" if more > 0 else "")
