"""Checks that need no Ray: run before any actor starts, so bad input fails in seconds."""

from __future__ import annotations

from pathlib import Path

from rlaif_ray.config import ConfigError, EvalConfig, LabelConfig, RolesConfig


def check_model_ref(field: str, ref: str) -> None:
    """A local path must exist and hold a config.json; anything else must look like a hub name."""
    path = Path(ref)
    looks_local = ref.startswith((".", "/", "~")) or path.exists() or ref.count("/") > 1
    if looks_local:
        if not path.expanduser().exists():
            raise ConfigError(f"{field}: model path {ref} does not exist "
                              f"(build the tiny models with `rlaif-ray make-tiny-models DIR`, or give a hub name)")
        if not (path.expanduser() / "config.json").exists():
            raise ConfigError(f"{field}: {ref} is not a Hugging Face model folder (no config.json)")


def check_models(cfg: RolesConfig) -> None:
    check_model_ref("model.policy", cfg.model.policy)
    check_model_ref("model.labeler", cfg.model.labeler)
    for k, source in enumerate(cfg.reward.sources):
        if source.model:
            check_model_ref(f"reward.sources.{k}.model", source.model)
    check_labeler_prompts(cfg)


def check_prompt_format(data_cfg, model_path: str, trust_remote_code: bool) -> None:
    """`data.chat_template` needs a tokenizer with a chat template: refused here, by model name,
    before any actor starts (the actors build the same formatter later)."""
    if not (data_cfg.chat_template or data_cfg.system_prompt):
        return
    from rlaif_ray.modeling import load_tokenizer
    from rlaif_ray.prompts import formatter_for

    formatter_for(load_tokenizer(model_path, trust_remote_code), data_cfg, model_path)


def check_labeler_prompts(cfg: RolesConfig | LabelConfig | EvalConfig) -> None:
    """`labeler.chat_template` needs a labeler tokenizer with a chat template (refused here,
    by model name, before any actor starts)."""
    if not cfg.labeler.chat_template:
        return
    from rlaif_ray.labeler.render import LabelerPrompts
    from rlaif_ray.modeling import load_tokenizer

    LabelerPrompts(cfg.labeler, load_tokenizer(cfg.model.labeler, cfg.model.trust_remote_code), cfg.model.labeler)
