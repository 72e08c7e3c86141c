"""Reading a run YAML: dotted overrides, validation with errors that name the field path,
dumping, and the schema `rlaif-ray config schema` prints."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from rlaif_ray.config.run import RunConfig
from rlaif_ray.errors import ConfigError

def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{path}: {msg}" if path != "(top level)" or ": " not in msg else msg)
    return "\n".join(lines)


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


def config_from_dict(raw: dict, source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}:\n{_format_validation_error(err)}") from None


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


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate one run YAML. Relative local paths resolve against the CWD."""
    return config_from_dict(read_raw_config(path, overrides), str(path))


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def describe_schema(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
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
