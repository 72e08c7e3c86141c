"""Offline checks of cluster files, and whether a run config's roles fit them.

Two kinds of file:
- a Ray cluster launcher YAML (`ray up`): checked with Ray's own `ray-schema.json`, then Ray's
  own `prepare_config` + `validate_config` (that order: `validate_config` expects the
  defaults `prepare_config` fills in), exactly what `ray up` would run before touching a cloud;
- a KubeRay manifest (`kind: RayCluster` or `RayJob`, apiVersion ray.io/v1): the CRDs are not
  shipped with Ray, so the fields rlaif-ray relies on are checked by hand.

With a run config, every role's per-actor resources (CPU, GPU, custom) must fit one node
type, and all actors together must be placeable within the node types' max counts:

    role labeler needs {CPU: 4, GPU: 1, labeler: 1} per actor; no node type offers 'labeler'

Nothing here talks to a cluster or imports the Ray core; `check_cluster_file` raises
`ClusterConfigError`, `validate_cluster_file` returns the error lines (empty: OK).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from rlaif_ray.config import Resources, TrainConfig, load_config
from rlaif_ray.errors import ClusterConfigError

KUBERAY_KINDS = ("RayCluster", "RayJob")


@dataclass
class NodeType:
    """One kind of node the cluster can have, and how many of it at most."""

    name: str
    resources: dict[str, float]  # what one node offers: CPU, GPU, custom role resources
    max_count: int               # nodes of this type at most (head: 1)
    is_head: bool = False


def check_cluster_file(path: str | Path, run_config: TrainConfig | str | Path | None = None) -> None:
    """Raise `ClusterConfigError` listing every problem; return quietly when the file is usable."""
    errors = validate_cluster_file(path, run_config)
    if errors:
        raise ClusterConfigError(path, errors)


def validate_cluster_file(path: str | Path, run_config: TrainConfig | str | Path | None = None) -> list[str]:
    """Every problem of a launcher YAML or KubeRay manifest (and the run's fit on it); [] when OK.

    `run_config` is a `TrainConfig` or the path of a run YAML (a bad run YAML raises `ConfigError`).
    """
    path = Path(path)
    if not path.is_file():
        return [f"file not found: {path}"]
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        return [f"malformed YAML: {err}"]
    if not isinstance(doc, dict):
        return ["expected a mapping at the top level"]
    if isinstance(run_config, (str, Path)):
        run_config = load_config(run_config)

    if "kind" in doc or "apiVersion" in doc:
        errors = kuberay_errors(doc)
        if errors or run_config is None:
            return errors
        return run_fit_errors(run_config, kuberay_node_types(doc), max_total=None)

    errors, prepared = launcher_errors(doc)
    if errors or run_config is None:
        return errors
    return run_fit_errors(run_config, launcher_node_types(prepared), max_total=prepared.get("max_workers"))


# --------------------------------------------------------------------------- Ray cluster launcher


def launcher_errors(doc: dict) -> tuple[list[str], dict]:
    """(errors, config as `ray up` would use it): Ray's schema, then prepare + validate."""
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema_path = os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")
    with open(schema_path) as f:
        schema = json.load(f)
    # All schema errors at once (Ray's validate stops at the first), each named by field path.
    schema_errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(map(str, e.path)))
    if schema_errors:
        return [f"{_json_path(e.absolute_path)}: {e.message}" for e in schema_errors], doc
    util_log = logging.getLogger("ray.autoscaler._private.util")
    level = util_log.level
    util_log.setLevel(logging.ERROR)  # prepare_config logs every default it fills in
    try:
        prepared = prepare_config(copy.deepcopy(doc))
        validate_config(prepared)
    except Exception as err:  # Ray raises ValueError, RuntimeError, NotImplementedError, jsonschema errors
        return [f"ray: {type(err).__name__}: {err}"], doc
    finally:
        util_log.setLevel(level)
    return [], prepared


def launcher_node_types(prepared: dict) -> list[NodeType]:
    head = prepared.get("head_node_type")
    return [NodeType(name, {k: float(v) for k, v in (spec.get("resources") or {}).items()},
                     1 if name == head else int(spec.get("max_workers", 0)), is_head=name == head)
            for name, spec in prepared.get("available_node_types", {}).items()]


def _json_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


# --------------------------------------------------------------------------- KubeRay


def kuberay_errors(doc: dict) -> list[str]:
    """The RayCluster / RayJob fields rlaif-ray relies on, each error named by its field path."""
    errors = []
    if doc.get("apiVersion") != "ray.io/v1":
        errors.append(f"apiVersion: expected ray.io/v1, got {doc.get('apiVersion')!r}")
    kind = doc.get("kind")
    if kind not in KUBERAY_KINDS:
        return errors + [f"kind: expected one of {', '.join(KUBERAY_KINDS)}, got {kind!r}"]
    if not isinstance((doc.get("metadata") or {}).get("name"), str):
        errors.append("metadata.name: required (a string)")
    spec, where = _cluster_spec(doc)
    if kind == "RayJob" and not isinstance((doc.get("spec") or {}).get("entrypoint"), str):
        errors.append("spec.entrypoint: required (the job's command, e.g. python -m jobs.train_ppo --config ...)")
    if not isinstance(spec, dict):
        return errors + [f"{where}: required (a mapping)"]
    if spec.get("enableInTreeAutoscaling") is not True:
        errors.append(f"{where}.enableInTreeAutoscaling: must be true (worker groups scale with the roles' demand)")
    auth = spec.get("authOptions")
    if auth is not None and (not isinstance(auth, dict) or auth.get("mode") not in ("token", "disabled")):
        errors.append(f"{where}.authOptions.mode: expected token or disabled")
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        errors.append(f"{where}.headGroupSpec: required (a mapping)")
    else:
        errors += _pod_template_errors(head, f"{where}.headGroupSpec")
    groups = spec.get("workerGroupSpecs")
    if not isinstance(groups, list) or not groups:
        return errors + [f"{where}.workerGroupSpecs: required (a non-empty list)"]
    for i, g in enumerate(groups):
        at = f"{where}.workerGroupSpecs[{i}]"
        if not isinstance(g, dict):
            errors.append(f"{at}: expected a mapping")
            continue
        if not isinstance(g.get("groupName"), str):
            errors.append(f"{at}.groupName: required (a string)")
        counts = {k: g.get(k) for k in ("replicas", "minReplicas", "maxReplicas")}
        bad = [k for k, v in counts.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0]
        errors += [f"{at}.{k}: required (an integer ≥ 0)" for k in bad]
        if not bad and not counts["minReplicas"] <= counts["replicas"] <= counts["maxReplicas"]:
            errors.append(f"{at}: needs minReplicas ≤ replicas ≤ maxReplicas, got {counts}")
        errors += _pod_template_errors(g, at)
    return errors


def _cluster_spec(doc: dict) -> tuple[object, str]:
    spec = doc.get("spec")
    if doc.get("kind") == "RayJob":
        return (spec or {}).get("rayClusterSpec") if isinstance(spec, dict) else None, "spec.rayClusterSpec"
    return spec, "spec"


def _pod_template_errors(group: dict, at: str) -> list[str]:
    containers = ((group.get("template") or {}).get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        return [f"{at}.template.spec.containers: required (a non-empty list)"]
    return [f"{at}.template.spec.containers[{i}].{k}: required (a string)"
            for i, c in enumerate(containers) for k in ("name", "image")
            if not isinstance((c or {}).get(k), str)]


def kuberay_node_types(doc: dict) -> list[NodeType]:
    """Head + worker groups, resources from rayStartParams (what Ray is told) or container limits."""
    spec, _ = _cluster_spec(doc)
    out = [NodeType("headGroup", _group_resources(spec["headGroupSpec"]), 1, is_head=True)]
    for g in spec["workerGroupSpecs"]:
        out.append(NodeType(g["groupName"], _group_resources(g), g["maxReplicas"] * int(g.get("numOfHosts", 1))))
    return out


def _group_resources(group: dict) -> dict[str, float]:
    params = group.get("rayStartParams") or {}
    limits = (group["template"]["spec"]["containers"][0].get("resources") or {}).get("limits") or {}
    res: dict[str, float] = {}
    cpu = params.get("num-cpus", limits.get("cpu"))
    if cpu is not None:
        res["CPU"] = _quantity(cpu)
    gpu = params.get("num-gpus", limits.get("nvidia.com/gpu"))
    if gpu is not None:
        res["GPU"] = _quantity(gpu)
    custom = params.get("resources")
    if custom:
        # KubeRay's convention is a quoted JSON string: '"{\"rollout\": 1}"'.
        while isinstance(custom, str):
            custom = json.loads(custom)
        res.update({k: float(v) for k, v in custom.items()})
    res.update({k: _quantity(v) for k, v in (group.get("resources") or {}).items()})  # KubeRay ≥ 1.4 field
    return res


def _quantity(v) -> float:
    """A Kubernetes quantity as a number: "4" → 4, "500m" → 0.5."""
    s = str(v).strip()
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


# --------------------------------------------------------------------------- does the run fit?


def role_demands(cfg: TrainConfig) -> list[tuple[str, dict[str, float], int]]:
    """(role, per-actor bundle, actor count) for every role, as the driver's placement groups ask."""
    def bundle(r: Resources) -> dict[str, float]:
        return r.as_bundle() or {"CPU": 0.01}  # the driver's own fallback for a zero bundle
    return [("rollout", bundle(cfg.rollout.resources), cfg.rollout.num_actors),
            ("labeler", bundle(cfg.labeler.resources), cfg.labeler.num_actors),
            ("reference", bundle(cfg.reference.resources), 1),
            ("learner", bundle(cfg.learner.resources), cfg.learner.num_workers)]


def run_fit_errors(cfg: TrainConfig, node_types: list[NodeType], max_total: int | None) -> list[str]:
    """Per-role fit on one node, then a first-fit placement of all actors within the max counts."""
    errors = [e for role, need, _ in role_demands(cfg) if (e := _role_fit_error(role, need, node_types))]
    if errors:
        return errors
    return _placement_errors(role_demands(cfg), node_types, max_total)


def _fits(need: dict[str, float], free: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + 1e-9 >= v for k, v in need.items())


def _role_fit_error(role: str, need: dict[str, float], node_types: list[NodeType]) -> str | None:
    usable = [t for t in node_types if t.max_count > 0]
    if any(_fits(need, t.resources) for t in usable):
        return None
    head = f"role {role} needs {fmt_resources(need)} per actor; "
    missing = [k for k in need if not any(t.resources.get(k, 0) > 0 for t in usable)]
    if missing:
        return head + "no node type offers " + ", ".join(f"'{k}'" for k in missing)
    short = [k for k in need if not any(t.resources.get(k, 0) + 1e-9 >= need[k] for t in usable)]
    if short:
        most = ", ".join(f"{k}: {_num(max(t.resources.get(k, 0) for t in usable))}" for k in short)
        return head + f"no node type offers that much {', '.join(short)} (the most any offers: {most})"
    def lacks(t: NodeType) -> str:
        return ", ".join(f"no '{k}'" if not t.resources.get(k) else f"{k} {_num(t.resources[k])} < {_num(v)}"
                         for k, v in need.items() if t.resources.get(k, 0) + 1e-9 < v)
    return head + "no single node type offers all of it (" + "; ".join(f"{t.name}: {lacks(t)}" for t in usable) + ")"


def _placement_errors(demands, node_types: list[NodeType], max_total: int | None) -> list[str]:
    opened: dict[str, int] = {t.name: 0 for t in node_types}
    free: list[dict[str, float]] = []  # what is left on every node opened so far
    for t in node_types:
        if t.is_head:
            opened[t.name] = 1
            free.append(dict(t.resources))
    workers = 0
    for role, need, count in demands:
        for placed in range(count):
            slot = next((f for f in free if _fits(need, f)), None)
            if slot is None:
                # Open the smallest node type that fits and may still grow.
                candidates = sorted((t for t in node_types if not t.is_head and _fits(need, t.resources)
                                     and opened[t.name] < t.max_count), key=lambda t: sum(t.resources.values()))
                if not candidates or (max_total is not None and workers >= max_total):
                    fitting = [t for t in node_types if _fits(need, t.resources)]
                    caps = ", ".join(f"{t.name}: {'head' if t.is_head else f'max {t.max_count}'}" for t in fitting)
                    limit = f"; the cluster's max_workers is {max_total}" if max_total is not None else ""
                    return [f"role {role}: only {placed} of {count} actors × {fmt_resources(need)} can be placed "
                            f"on the nodes the cluster may start (node types that fit: {caps}{limit}); "
                            f"raise their max_workers or lower the role's count/resources"]
                t = candidates[0]
                opened[t.name] += 1
                workers += 1
                slot = dict(t.resources)
                free.append(slot)
            for k, v in need.items():
                slot[k] = slot.get(k, 0.0) - v
    return []


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def fmt_resources(res: dict[str, float]) -> str:
    """`{CPU: 4, GPU: 1, labeler: 1}`: CPU and GPU first, then custom resources by name."""
    order = sorted(res, key=lambda k: (k not in ("CPU", "GPU"), k != "CPU", k))
    return "{" + ", ".join(f"{k}: {_num(res[k])}" for k in order) + "}"
