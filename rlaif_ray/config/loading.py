"""Reading a verb's YAML: dotted overrides, validation into that verb's config type with
errors that name the field path, dumping, and the schema `rlaif-ray config schema VERB` prints."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from rlaif_ray.config.run import RejectionSamplingConfig, TrainConfig
from rlaif_ray.config.sections import VerbConfig
from rlaif_ray.config.verbs import DPOConfig, EvalConfig, LabelConfig, RewardModelConfig
from rlaif_ray.errors import ConfigError

VERB_CONFIGS: dict[str, type[VerbConfig]] = {
    "train": TrainConfig, "label": LabelConfig, "train-rm": RewardModelConfig, "dpo": DPOConfig,
    "eval": EvalConfig, "rejection-sampling": RejectionSamplingConfig,
}
"""Each verb's config type: it holds only the sections that verb reads."""

# The one section only that verb has: how `config validate` tells a file's verb, and how a
# section in the wrong file is named.
VERB_SECTIONS = {"label": "label", "reward_model_train": "train-rm", "dpo": "dpo", "eval": "eval",
                 "rejection_sampling": "rejection-sampling"}


def _format_validation_error(err: ValidationError, verb: str) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = _unknown_key_message(path, verb)
        lines.append(f"{path}: {msg}" if path != "(top level)" or ": " not in msg else msg)
    return "\n".join(lines)


def _unknown_key_message(path: str, verb: str) -> str:
    """'unknown key', or, for a field another verb reads, which verbs read it."""
    readers = [v for v, model in VERB_CONFIGS.items() if v != verb and _has_field(model, path.split("."))]
    if not readers:
        return "unknown key"
    return f"not read by `rlaif-ray {verb}` (only by {', '.join(readers)}); remove it"


def _has_field(model: type[BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    sub = section_model(field.annotation)
    return len(parts) == 1 or (sub is not None and _has_field(sub, parts[1:]))


def infer_verb(raw: dict) -> str:
    """The verb a YAML is for: the one whose own section it holds (train when none, and for a
    training run's config.yaml of before 2026-12, which holds them all)."""
    raw = drop_other_verbs(raw)
    found = [verb for key, verb in VERB_SECTIONS.items() if key in raw]
    if len(found) > 1:
        raise ConfigError(f"sections {', '.join(k for k in VERB_SECTIONS if k in raw)}: one config is for one verb; "
                          "split it into one file per verb")
    return found[0] if found else "train"


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply dotted `key.path=value` overrides; values are parsed as YAML (`0.1`, `true`, `[a]`)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = _child(node, part, key)
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {key}: {part} is not a section")
        if isinstance(node, list):
            node[_list_index(node, parts[-1], key)] = yaml.safe_load(value)
        else:
            node[parts[-1]] = yaml.safe_load(value)
    return raw


def _child(node, part: str, key: str):
    """One step of a dotted path: a section (created if missing) or a list item by index."""
    if isinstance(node, list):
        return node[_list_index(node, part, key)]
    return node.setdefault(part, {})


def _list_index(items: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(items)} item(s)")
    return int(part)


def config_from_dict(raw: dict, source: str = "config", verb: str = "train"):
    """`raw` validated as `verb`'s config type (VERB_CONFIGS)."""
    if verb == "train":
        raw = drop_other_verbs(raw)
    own = next((key for key, v in VERB_SECTIONS.items() if v == verb), None)
    if own and own not in raw:  # one line instead of a page of keys this verb does not read
        raise ConfigError(f"{source}: {own}: required; this is a config of `rlaif-ray {infer_verb(raw)}` "
                          f"(`rlaif-ray config schema {verb}` lists what {verb} reads)")
    try:
        return VERB_CONFIGS[verb].model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}:\n{_format_validation_error(err, verb)}") from None


def drop_other_verbs(raw: dict) -> dict:
    """A training run's config.yaml written before 2026-12 held every verb's section (at its
    defaults); the run reads none of them, and dropping them keeps those runs resumable."""
    if all(key in raw for key in ("reward_model_train", "dpo", "rejection_sampling", "label")):
        raw = {k: v for k, v in raw.items() if k not in VERB_SECTIONS}
    return raw


def read_raw_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    """The run YAML as a plain dict with the dotted overrides applied (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return apply_overrides(raw, overrides or [])


def load_config(path: str | Path, overrides: list[str] | None = None, verb: str = "train"):
    """Read, override and validate one YAML as `verb`'s config. Relative local paths resolve against the CWD."""
    return config_from_dict(read_raw_config(path, overrides), str(path), verb)


def dump_config(cfg: VerbConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def describe_schema(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[str]:
    """One line per field: dotted path, type, default and description."""
    lines = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = section_model(field.annotation)
        if ann is not None:
            lines.append(f"{path}:  {field.description or ann.__doc__ or ''}".rstrip())
            lines.extend(describe_schema(ann, path + "."))
            continue
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        lines.append(f"{path} = {default}  # {field.description or ''}")
    return lines


def section_model(annotation) -> type[BaseModel] | None:
    """The section model of a field typed `Section` or `Section | None`; None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None
