"""What `rlaif-ray submit` uploads: the repo as the job's working_dir, with the local files its
run config names.

The job runs in an unpacked copy of the repo, and reads a relative path of the config from
that copy. So every string of the config that names a local path is looked at:

- relative and present under the repo root (configs/local.yaml's `.cache/tiny-models/policy`):
  uploaded with the job, even where .gitignore or the default excludes (`.cache`,
  `*.safetensors`, ...) would leave it out;
- relative and path-shaped (starts with `.` or `~`, has two `/`, or ends in a data/model file
  type) but not there, or outside the repo (`../data`): refused before anything is sent;
- absolute: not uploaded; a warning says every node that reads it must have it at that path
  (a shared filesystem, or baked into the image) — that is how large models are meant to reach
  a cluster;
- anything else (an HF hub name such as `Qwen/Qwen2.5-1.5B-Instruct`): left to the cluster.

The upload is computed here file by file (`DEFAULT_EXCLUDES` and every .gitignore, minus the
named paths; .rayignore always wins, as in Ray) and handed to Ray as explicit excludes, with
Ray's own .gitignore reading turned off (RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1 in the submitting
process), so Ray uploads exactly what was sized. Over Ray's working_dir limit (the GCS's largest
message, 512 MiB unless RAY_max_grpc_message_size says otherwise) the submission is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rlaif_ray.errors import PackageError

# Never uploaded unless the config names them: environments, caches, outputs, history, weights.
DEFAULT_EXCLUDES = [".venv", ".cache", "runs", ".git", "**/__pycache__", "*.egg-info", ".pytest_cache",
                    "bench/results", "*.safetensors", "*.bin", "*.pt", "*.parquet"]

# A string ending in one of these names a file, not a hub id.
PATH_SUFFIXES = {".jsonl", ".json", ".parquet", ".arrow", ".csv", ".txt", ".yaml", ".yml",
                 ".safetensors", ".bin", ".pt", ".gguf"}

# Config keys that are never read by a job on the cluster.
LOCAL_ONLY_KEYS = {"ray.temp_dir"}

IGNORE_GITIGNORE_ENV = "RAY_RUNTIME_ENV_IGNORE_GITIGNORE"


@dataclass
class Package:
    excludes: list[str]                 # runtime_env["excludes"]: anchored, repo-relative
    size_bytes: int                     # what is uploaded, before compression
    named: dict[str, int] = field(default_factory=dict)   # repo-relative path the config names -> bytes
    warnings: list[str] = field(default_factory=list)


def ray_size_limit() -> int:
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    return GCS_STORAGE_MAX_SIZE


def config_strings(obj, key: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, value) of every string in a dumped config."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from config_strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from config_strings(v, f"{key}[{i}]")
    elif isinstance(obj, str):
        yield key, obj


def _candidate(value: str) -> bool:
    if not value or any(c.isspace() for c in value) or "://" in value:
        return False
    return "/" in value or value.startswith(("~", ".")) or Path(value).suffix.lower() in PATH_SUFFIXES


def _surely_a_path(value: str) -> bool:
    return (value.startswith(("~", ".")) or value.count("/") >= 2
            or Path(value).suffix.lower() in PATH_SUFFIXES)


def named_paths(cfg_dump: dict, repo_root: Path) -> tuple[dict[str, str], list[str]]:
    """({repo-relative path: config key} that must travel, warnings); PackageError on a path
    the job could not read."""
    root = repo_root.resolve()
    named, warnings = {}, []
    for key, value in config_strings(cfg_dump):
        if key in LOCAL_ONLY_KEYS or not _candidate(value):
            continue
        path = Path(value).expanduser()
        if path.is_absolute():
            inside = path.resolve().is_relative_to(root)
            warnings.append(f"{key}: {value} is an absolute path, not uploaded with the job: every node that reads "
                            f"it must have it there" + ("; give it relative to the repo root to send it along"
                                                       if inside else " (shared filesystem or the image)"))
            continue
        local = (root / path).resolve()
        if not local.is_relative_to(root):
            raise PackageError(f"{key}: {value} is outside the repo ({root}), which is all a job uploads; "
                               f"move it into the repo or give an absolute path the cluster's nodes have")
        if local.exists():
            named[local.relative_to(root).as_posix()] = key
        elif _surely_a_path(value):
            raise PackageError(f"{key}: {value} is not under the repo root {root}, and the job reads relative "
                               f"paths from its uploaded copy of the repo (build it first, e.g. "
                               f"`rlaif-ray make-tiny-models .cache/tiny-models`, or give a path the cluster has)")
    return named, warnings


def _escape(rel: str) -> str:
    return "/" + re.sub(r"([*?\[\]\\!#])", r"\\\1", rel)


def _spec(lines: list[str]):
    from ray._private.thirdparty.pathspec import PathSpec

    return PathSpec.from_lines("gitwildmatch", lines)


def _matches(specs, rel: str) -> bool:
    for base, spec in specs:
        if base == "" or rel.startswith(base + "/"):
            if spec.match_file(rel[len(base) + 1:] if base else rel):
                return True
    return False


def plan_package(repo_root: Path, named: dict[str, str]) -> Package:
    """Walk the repo as Ray would and decide, per entry, upload or exclude (named paths stay)."""
    root = repo_root.resolve()
    keep = set(named)
    excludes: list[str] = []
    sizes = {k: 0 for k in keep}
    total = 0

    def visit(directory: Path, rel: str, soft: list, hard: list, under: str | None) -> None:
        nonlocal total
        for name, specs in ((".gitignore", soft), (".rayignore", hard)):
            if (directory / name).is_file():
                specs.append((rel, _spec((directory / name).read_text().splitlines())))
        for entry in sorted(directory.iterdir()):
            r = f"{rel}/{entry.name}" if rel else entry.name
            mine = under or (r if r in keep else None)
            if _matches(hard, r):
                if mine or any(k.startswith(r + "/") for k in keep):
                    raise PackageError(f"{named[mine or next(k for k in keep if k.startswith(r + '/'))]}: "
                                       f"{r} is excluded by a .rayignore, so the job would not get it")
                excludes.append(_escape(r))
                continue
            if not mine and not any(k.startswith(r + "/") for k in keep) and _matches(soft, r):
                excludes.append(_escape(r))
                continue
            if entry.is_dir():
                visit(entry, r, list(soft), list(hard), mine)
            elif entry.is_file():
                size = entry.stat().st_size
                total += size
                if mine:
                    sizes[mine] += size

    visit(root, "", [("", _spec(DEFAULT_EXCLUDES))], [], None)
    return Package(excludes=excludes, size_bytes=total, named=sizes)


def check_size(package: Package, limit_bytes: int) -> None:
    if package.size_bytes <= limit_bytes:
        return
    mib = 2**20
    biggest = sorted(package.named.items(), key=lambda kv: -kv[1])[:3]
    named = ", ".join(f"{p} {b / mib:.0f} MiB" for p, b in biggest if b >= mib)
    raise PackageError(f"the job's working_dir would be {package.size_bytes / mib:.0f} MiB"
                       + (f" (named by the config: {named})" if named else "")
                       + f", over Ray's working_dir limit of {limit_bytes / mib:.0f} MiB; put large models and "
                         f"data on the cluster and name them by absolute path or hub name")


def package_for(cfg_dump: dict, config_rel: str, repo_root: Path, limit_bytes: int | None = None) -> Package:
    """The upload of a job running `config_rel` (itself always uploaded); PackageError if it cannot work."""
    named, warnings = named_paths(cfg_dump, repo_root)
    named.setdefault(config_rel, "--config")
    package = plan_package(repo_root, named)
    package.warnings = warnings
    check_size(package, ray_size_limit() if limit_bytes is None else limit_bytes)
    return package
