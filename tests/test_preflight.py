"""Preflight model checks: local paths must be model folders, hub names pass untouched."""

from __future__ import annotations

import pytest

from rlaif_ray.config import ConfigError, load_config
from rlaif_ray.preflight import check_model_ref, check_models


def _cfg(repo_root, policy, labeler):
    return load_config(repo_root / "configs/local.yaml", [f"model.policy={policy}", f"model.labeler={labeler}"])


def test_missing_local_policy_path_names_the_field(tmp_path, repo_root):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match=r"^model.policy: model path .*no-such-model does not exist"):
        check_models(_cfg(repo_root, missing, "org/labeler"))


def test_folder_without_config_json(tmp_path, repo_root):
    folder = tmp_path / "labeler"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^model.labeler: .*labeler is not a Hugging Face model folder \(no config.json\)"):
        check_models(_cfg(repo_root, "org/policy", folder))


def test_model_folder_and_hub_names_pass(tmp_path, repo_root):
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    check_models(_cfg(repo_root, folder, "org/model"))  # no error
    check_model_ref("model.policy", "org/model")
    check_model_ref("model.policy", "gpt2")


def test_relative_and_nested_paths_are_treated_as_local():
    # "./x", "a/b/c" (two slashes) look local, so a missing one is an error, not a hub lookup.
    for ref in ("./definitely-missing", "a/b/definitely-missing"):
        with pytest.raises(ConfigError, match="does not exist"):
            check_model_ref("model.policy", ref)


def test_missing_scorer_model_is_named(tmp_path):
    from rlaif_ray.config import load_config
    from rlaif_ray.preflight import check_models

    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    cfg = load_config("configs/local.yaml", [f"model.policy={policy}", f"model.labeler={policy}",
                                             "reward.sources=[{kind: reward_model, model: ./no/rm}]"])
    with pytest.raises(ConfigError, match=r"reward.sources.0.model"):
        check_models(cfg)
