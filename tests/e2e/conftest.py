"""End-to-end fixtures: one private local Ray for the session and run configs on the tiny models.

Every training run in these tests uses real Ray actors, real vLLM engines and real
DeepSpeed learners; only the models are tiny.
"""

from __future__ import annotations


import pytest

from rlaif_ray.config import RunConfig, config_from_dict
from rlaif_ray.toy_task import write_toy_prompts_jsonl

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def toy_prompts_file(tiny_models, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "prompts-train.jsonl"
    write_toy_prompts_jsonl(path, 512, seed=0, split="train")
    return path


@pytest.fixture(scope="session")
def make_config(tiny_models, toy_prompts_file):
    """configs/local.yaml pointed at the session's tiny models, with dotted overrides."""
    import yaml

    from rlaif_ray.config import apply_overrides

    base = yaml.safe_load((REPO_ROOT / "configs" / "local.yaml").read_text())

    def make(*overrides: str) -> RunConfig:
        raw = apply_overrides(yaml.safe_load(yaml.safe_dump(base)), [
            f"model.policy={tiny_models['policy']}", f"model.labeler={tiny_models['labeler']}",
            f"data.source={toy_prompts_file}", *overrides])
        return config_from_dict(raw)

    return make
