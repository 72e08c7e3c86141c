"""What a submitted job carries (working_dir, env, interpreter) — no cluster needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlaif_ray.job_env import (JOB_CONFIG_ENV, check_job_python, missing_requirements, without_job_env_vars)
from rlaif_ray.job_package import PackageError, named_paths, package_for

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path):
    """A small repo: code, a .gitignore, git-ignored models and caches."""
    root = tmp_path / "repo"
    files = {
        ".gitignore": ".cache/\nruns/\n*.safetensors\n__pycache__/\n",
        "pkg/__init__.py": "", "pkg/__pycache__/m.cpython-311.pyc": "x",
        "configs/run.yaml": "run: {}\n", "configs/data/prompts.jsonl": "{}\n",
        ".cache/models/policy/model.safetensors": "w" * 1000, ".cache/models/policy/config.json": "{}",
        ".cache/models/other/model.safetensors": "w" * 5000, ".cache/big.lock": "",
        "weights/loose.safetensors": "w" * 100, "runs/old/metrics.jsonl": "{}",
        ".venv/bin/python": "", ".git/HEAD": "ref",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def uploaded(root: Path, excludes: list[str]) -> set[str]:
    """The files Ray's own packaging walk uploads with these excludes and .gitignore off."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    found = set()
    _dir_travel(root, [_get_excludes(root, excludes)],
                lambda p: found.add(p.relative_to(root).as_posix()) if p.is_file() else None,
                include_gitignore=False)
    return found


def test_named_git_ignored_files_travel_and_nothing_else_from_excluded_places(repo):
    cfg = {"model": {"policy": ".cache/models/policy", "labeler": "Qwen/Qwen2.5-7B-Instruct"},
           "data": {"source": "configs/data/prompts.jsonl", "split": "train"}}
    pkg = package_for(cfg, "configs/run.yaml", repo, limit_bytes=2**20)
    assert uploaded(repo, pkg.excludes) == {
        ".gitignore", "pkg/__init__.py", "configs/run.yaml", "configs/data/prompts.jsonl",
        ".cache/models/policy/model.safetensors", ".cache/models/policy/config.json"}
    assert set(pkg.named) == {".cache/models/policy", "configs/data/prompts.jsonl", "configs/run.yaml"}
    assert pkg.named[".cache/models/policy"] == 1002
    assert pkg.size_bytes == sum((repo / f).stat().st_size for f in uploaded(repo, pkg.excludes))
    assert pkg.warnings == []


def test_paths_the_job_could_not_read_are_refused_and_absolute_ones_warned(repo, tmp_path):
    with pytest.raises(PackageError, match=r"model.policy: .cache/missing/policy is not under the repo root"):
        named_paths({"model": {"policy": ".cache/missing/policy"}}, repo)
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text("{}")
    with pytest.raises(PackageError, match="data.source: ../elsewhere.jsonl is outside the repo"):
        named_paths({"data": {"source": "../elsewhere.jsonl"}}, repo)
    named, warnings = named_paths({"data": {"source": str(outside)}, "model": {"policy": "org/model"},
                                   "ray": {"temp_dir": "/tmp/x"}}, repo)
    assert named == {}
    assert len(warnings) == 1 and warnings[0].startswith(f"data.source: {outside} is an absolute path, not uploaded")


def test_over_rays_working_dir_limit_is_refused_with_the_biggest_paths(repo):
    big = repo / ".cache" / "models" / "policy" / "model.safetensors"
    big.write_bytes(b"w" * (3 * 2**20))
    with pytest.raises(PackageError, match=r"would be 3 MiB \(named by the config: .cache/models/policy 3 MiB\), "
                                           r"over Ray's working_dir limit of 2 MiB"):
        package_for({"model": {"policy": ".cache/models/policy"}}, "configs/run.yaml", repo, limit_bytes=2 * 2**20)


def test_build_submission_names_interpreter_env_and_local_models(monkeypatch):
    from rlaif_ray.job_client import build_submission

    policy = REPO / ".cache" / "tiny-models" / "policy"
    if not policy.is_dir():
        pytest.skip("tiny models not built")
    sub = build_submission(REPO / "configs" / "local.yaml", ['ray.env_vars={HF_HUB_OFFLINE: "1"}',
                           "data.source=configs/local.yaml"], "runs/x", python="/opt/py/bin/python")
    assert sub.entrypoint.startswith("/opt/py/bin/python -m jobs.train_ppo --config configs/local.yaml --set ")
    assert sub.runtime_env["env_vars"] == {"HF_HUB_OFFLINE": "1", "PYTHONPATH": "."}
    assert not [e for e in sub.runtime_env["excludes"] if ".cache/tiny-models/policy".startswith(e[1:])]
    assert any("--run-dir runs/x is relative" in w for w in sub.warnings)


def test_driver_in_a_job_passes_on_only_what_the_job_does_not_set(monkeypatch):
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1"}
    monkeypatch.delenv(JOB_CONFIG_ENV, raising=False)
    assert without_job_env_vars(env) == env
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps({"runtime_env": {"working_dir": "gcs://x.zip",
                                                                   "env_vars": {"HF_HUB_OFFLINE": "1", "PYTHONPATH": "."}}}))
    assert without_job_env_vars(env) == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    # What Ray does with it: no conflict left.
    from ray.runtime_env.runtime_env import _merge_runtime_env

    job = json.loads(__import__("os").environ[JOB_CONFIG_ENV])["runtime_env"]
    assert _merge_runtime_env(job, {"env_vars": env}) is None
    assert _merge_runtime_env(job, {"env_vars": without_job_env_vars(env)}) is not None


def test_job_python_check_names_what_is_missing_in_one_line(capsys):
    assert missing_requirements() == []
    assert missing_requirements({"json": "json", "no_such_mod_xyz": "no-such-pkg"}) == ["no-such-pkg"]
    with pytest.raises(SystemExit) as exit_:
        check_job_python({"no_such_mod_xyz": "no-such-pkg", "tqdm": "tqdm", "also_missing_abc": "abc"})
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"rlaif-ray job: this interpreter ({sys.executable}) lacks no-such-pkg, abc; ")
    assert "--python" in err


def test_every_job_entrypoint_checks_its_interpreter_first(tmp_path):
    entrypoints = sorted(p for p in (REPO / "jobs").glob("*.py") if p.name != "__init__.py")
    assert len(entrypoints) >= 6
    for path in entrypoints:
        text = path.read_text()
        assert text.index("check_job_python()") < text.index("from rlaif_ray.cli import main"), path
    # An interpreter without the project's packages: one line, exit 2, before any other import.
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    out = subprocess.run([str(bare / "bin" / "python"), "-m", "jobs.train_ppo", "--config", "configs/local.yaml"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("rlaif-ray job: this interpreter ("), out.stderr
    assert "lacks ray[default], torch" in out.stderr
