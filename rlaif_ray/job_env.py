"""What a Ray job's driver checks about its own environment, before anything heavy is imported.

Standard library only: `jobs/*.py` call `check_job_python()` first, so an interpreter without
the project's packages fails with one line instead of an ImportError deep in a traceback.

A job runs `python -m jobs.<name>` with whatever `python` its entrypoint names: `rlaif-ray
submit --python PATH` (default `python`, found on the PATH of the Ray node that runs the
driver — for a head started from a virtualenv that was not activated, the system Python).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

# Import name -> what to install. What every job driver imports (the actors import the same).
JOB_REQUIREMENTS = {
    "ray": "ray[default]", "torch": "torch", "transformers": "transformers", "vllm": "vllm",
    "deepspeed": "deepspeed", "datasets": "datasets", "pyarrow": "pyarrow", "numpy": "numpy",
    "pydantic": "pydantic", "yaml": "pyyaml", "tqdm": "tqdm", "tokenizers": "tokenizers",
    "safetensors": "safetensors",
}

# Set by Ray's job supervisor for the job's driver: {"runtime_env": {...}, "metadata": {...}}.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def missing_requirements(requirements: dict[str, str] = JOB_REQUIREMENTS) -> list[str]:
    """What to install for the imports this interpreter cannot find (nothing is imported)."""
    missing = []
    for module, package in requirements.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(package)
    return missing


def missing_message(missing: list[str], python: str | None = None) -> str:
    return (f"rlaif-ray job: this interpreter ({python or sys.executable}) lacks {', '.join(missing)}; "
            f"install the project on every node (pip install -e . plus vllm: scripts/ensure-env.sh on CPU, "
            f"pip install -e '.[gpu]' on GPU) or name an interpreter that has it "
            f"(rlaif-ray submit --python PATH; ray job submit: the entrypoint's first word)")


def check_job_python(requirements: dict[str, str] = JOB_REQUIREMENTS) -> None:
    """Exit 2 with one line on stderr when this interpreter lacks the project's packages."""
    missing = missing_requirements(requirements)
    if missing:
        print(missing_message(missing), file=sys.stderr, flush=True)
        raise SystemExit(2)


def job_env_vars() -> dict[str, str]:
    """The env_vars of the Ray job this driver runs in ({} outside a job)."""
    try:
        config = json.loads(os.environ.get(JOB_CONFIG_ENV) or "{}")
    except ValueError:
        return {}
    runtime_env = (config.get("runtime_env") or {}) if isinstance(config, dict) else {}
    return dict(runtime_env.get("env_vars") or {})


def without_job_env_vars(env_vars: dict[str, str]) -> dict[str, str]:
    """`env_vars` minus the keys the job's own runtime_env sets.

    Inside a job, `ray.init(runtime_env=...)` is merged with the job's runtime_env and Ray
    refuses a variable set in both ("Failed to merge the Job's runtime env"), even with the
    same value. The job's variables are inherited by every actor anyway, so they win.
    """
    taken = job_env_vars()
    return {k: v for k, v in env_vars.items() if k not in taken}
