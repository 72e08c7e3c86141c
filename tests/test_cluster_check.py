"""Offline checks of the shipped cluster files (Ray's own schema + prepare/validate for launcher
YAMLs, the KubeRay fields we rely on) and of a run config's fit on them. No cluster needed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from rlaif_ray.cli import main
from rlaif_ray.cluster_check import (ClusterConfigError, check_cluster_file, fmt_resources, kuberay_node_types,
                                     validate_cluster_file)
from rlaif_ray.config import load_config

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = ["cluster/aws.yaml", "cluster/gcp.yaml", "cluster/local-autoscale.yaml"]
KUBERAY = ["cluster/kuberay/raycluster.yaml", "cluster/kuberay/rayjob.yaml"]
GPU_CLUSTERS = ["cluster/aws.yaml", "cluster/gcp.yaml", *KUBERAY]
GPU_RUN = REPO / "configs" / "cluster-gpu.yaml"


def load(rel: str) -> dict:
    return yaml.safe_load((REPO / rel).read_text())


def write(tmp_path: Path, doc: dict, name: str = "cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("rel", LAUNCHER + KUBERAY)
def test_shipped_cluster_files_validate(rel):
    assert validate_cluster_file(REPO / rel) == []


@pytest.mark.parametrize("rel", GPU_CLUSTERS)
def test_gpu_run_config_fits_the_gpu_clusters(rel):
    assert validate_cluster_file(REPO / rel, GPU_RUN) == []


def test_local_run_config_fits_the_fake_autoscaling_cluster():
    # configs/local.yaml asks for CPUs only: 4 actors × 1 CPU on the worker types (the head has 0).
    assert validate_cluster_file(REPO / "cluster/local-autoscale.yaml", REPO / "configs/local.yaml") == []


def test_shipped_files_carry_what_the_design_needs():
    aws = load("cluster/aws.yaml")
    for rel in ("cluster/aws.yaml", "cluster/gcp.yaml"):
        doc = load(rel)
        types = doc["available_node_types"]
        assert types[doc["head_node_type"]]["resources"] == {"CPU": 0}
        for role in ("rollout", "labeler", "learner"):
            (t,) = [t for t in types.values() if role in t["resources"]]
            assert t["min_workers"] == 0 and t["max_workers"] >= 1 and t["resources"]["GPU"] >= 1
        head_start = " ".join(doc["head_start_ray_commands"])
        assert "--dashboard-host 127.0.0.1" in head_start and "RAY_AUTH_MODE=token" in head_start
        assert "RAY_AUTH_MODE=token" in " ".join(doc["worker_start_ray_commands"])
        assert any('pip install -e "/home/ray/rlaif-ray[gpu]"' in c for c in doc["setup_commands"])
    assert aws["file_mounts"]["/home/ray/rlaif-ray"] == "."
    local = load("cluster/local-autoscale.yaml")
    assert local["provider"]["type"] == "external"
    assert local["provider"]["module"].endswith("fake_multi_node.node_provider.FakeMultiNodeProvider")
    assert local["available_node_types"]["ray.head.default"]["resources"] == {"CPU": 0}
    assert local["available_node_types"]["rollout_cpu"]["resources"]["rollout"] == 1
    for rel in KUBERAY:
        doc = load(rel)
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        assert doc["apiVersion"] == "ray.io/v1" and spec["enableInTreeAutoscaling"] is True
        assert spec["autoscalerOptions"]["version"] == "v2" and spec["authOptions"] == {"mode": "token"}
        groups = {t.name: t.resources for t in kuberay_node_types(doc)}
        assert groups["rollout-gpu"] == {"CPU": 8, "GPU": 1, "rollout": 1}
        assert groups["learner-gpu"]["learner"] == 4
    assert load("cluster/kuberay/rayjob.yaml")["spec"]["entrypoint"].startswith(
        "python -m jobs.train_ppo --config configs/cluster-gpu.yaml")


def test_gpu_run_config_is_a_valid_run_config():
    cfg = load_config(GPU_RUN)
    assert cfg.rollout.resources.num_gpus == 1 and cfg.rollout.resources.custom == {"rollout": 1}
    assert cfg.labeler.resources.custom == {"labeler": 1}
    assert cfg.learner.resources.custom == {"learner": 1}


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["available_node_types"]["labeler_gpu"].pop("node_config"), "available_node_types.labeler_gpu"),
    (lambda d: d["available_node_types"]["rollout_gpu"]["resources"].update(GPU="one"),
     "available_node_types.rollout_gpu.resources.GPU"),
    (lambda d: d.update(max_workers="8"), "max_workers"),
    (lambda d: d.update(idle_timeout_mins=10), "idle_timeout_mins"),
    (lambda d: d.pop("cluster_name"), "cluster_name"),
])
def test_broken_launcher_yaml_names_the_field(tmp_path, edit, field):
    doc = load("cluster/aws.yaml")
    edit(doc)
    errors = validate_cluster_file(write(tmp_path, doc))
    assert errors and any(field in e for e in errors), errors


def test_ray_prepare_and_validate_run_after_the_schema(tmp_path):
    doc = load("cluster/aws.yaml")
    doc["head_node_type"] = "no_such_type"  # schema-valid; Ray's validate_config refuses it
    errors = validate_cluster_file(write(tmp_path, doc))
    assert len(errors) == 1 and "head_node_type" in errors[0], errors


@pytest.mark.parametrize("edit, field", [
    (lambda s: s["workerGroupSpecs"][1].pop("maxReplicas"), "spec.workerGroupSpecs[1].maxReplicas"),
    (lambda s: s["workerGroupSpecs"][0].update(replicas="one"), "spec.workerGroupSpecs[0].replicas"),
    (lambda s: s["workerGroupSpecs"][2].pop("groupName"), "spec.workerGroupSpecs[2].groupName"),
    (lambda s: s.update(enableInTreeAutoscaling=False), "spec.enableInTreeAutoscaling"),
    (lambda s: s.pop("headGroupSpec"), "spec.headGroupSpec"),
    (lambda s: s["workerGroupSpecs"][0]["template"]["spec"].update(containers=[]),
     "spec.workerGroupSpecs[0].template.spec.containers"),
])
def test_broken_raycluster_names_the_field(tmp_path, edit, field):
    doc = load("cluster/kuberay/raycluster.yaml")
    edit(doc["spec"])
    errors = validate_cluster_file(write(tmp_path, doc))
    assert errors and any(e.startswith(field) for e in errors), errors


def test_broken_rayjob_names_the_field(tmp_path):
    doc = load("cluster/kuberay/rayjob.yaml")
    del doc["spec"]["entrypoint"], doc["metadata"]["name"]
    doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplicas"] = 9  # > replicas
    doc["apiVersion"] = "ray.io/v1alpha1"
    errors = validate_cluster_file(write(tmp_path, doc))
    for field in ("apiVersion", "metadata.name", "spec.entrypoint", "spec.rayClusterSpec.workerGroupSpecs[0]"):
        assert any(e.startswith(field) for e in errors), (field, errors)


@pytest.mark.parametrize("rel", GPU_CLUSTERS)
def test_labeler_needing_a_resource_nobody_offers_fails_naming_the_role(rel):
    cfg = load_config(GPU_RUN, ["labeler.resources.custom={judge: 1}"])
    errors = validate_cluster_file(REPO / rel, cfg)
    assert errors == ["role labeler needs {CPU: 6, GPU: 1, judge: 1} per actor; no node type offers 'judge'"]


def test_role_too_big_for_any_single_node_type():
    cfg = load_config(GPU_RUN, ["labeler.resources.num_gpus=2"])  # labeler nodes have 1 GPU
    (error,) = validate_cluster_file(REPO / "cluster/aws.yaml", cfg)
    assert error.startswith("role labeler needs {CPU: 6, GPU: 2, labeler: 1} per actor; no single node type")
    assert "labeler_gpu: GPU 1 < 2" in error


def test_too_many_actors_for_max_workers():
    cfg = load_config(GPU_RUN, ["rollout.num_actors=6"])  # 4 rollout nodes at most, 1 actor each
    (error,) = validate_cluster_file(REPO / "cluster/aws.yaml", cfg)
    assert error.startswith("role rollout: only 4 of 6 actors"), error
    cfg = load_config(GPU_RUN, ["learner.num_workers=8", "ppo.minibatch_size=64"])  # 8 + reference > 2 × 4 slots
    (error,) = validate_cluster_file(REPO / "cluster/kuberay/raycluster.yaml", cfg)
    assert error.startswith("role learner: only 7 of 8 actors"), error


def test_global_max_workers_is_respected(tmp_path):
    doc = load("cluster/aws.yaml")
    doc["max_workers"] = 3  # the run needs 2 rollout + 1 labeler + 1 learner node
    errors = validate_cluster_file(write(tmp_path, doc), GPU_RUN)
    assert len(errors) == 1 and "max_workers is 3" in errors[0], errors


def test_check_raises_a_clear_exception(tmp_path):
    doc = load("cluster/aws.yaml")
    doc["available_node_types"]["rollout_gpu"]["resources"]["GPU"] = 0.5
    with pytest.raises(ClusterConfigError) as err:
        check_cluster_file(write(tmp_path, doc))
    assert "available_node_types.rollout_gpu.resources.GPU" in str(err.value)
    assert err.value.errors and validate_cluster_file(tmp_path / "missing.yaml") == [
        f"file not found: {tmp_path / 'missing.yaml'}"]


def test_cli_cluster_validate(tmp_path, capsys):
    assert main(["cluster", "validate", str(REPO / "cluster/aws.yaml"), "--run-config", str(GPU_RUN)]) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    code = main(["cluster", "validate", str(REPO / "cluster/gcp.yaml"), "--run-config", str(GPU_RUN),
                 "--set", "labeler.resources.custom={judge: 1}"])
    assert code == 2
    assert "role labeler needs {CPU: 6, GPU: 1, judge: 1} per actor; no node type offers 'judge'" in capsys.readouterr().err
    bad = copy.deepcopy(load("cluster/aws.yaml"))
    bad["provider"].pop("type")
    assert main(["cluster", "validate", str(write(tmp_path, bad))]) == 2
    assert "provider: 'type' is a required property" in capsys.readouterr().err


def test_fmt_resources_orders_cpu_gpu_first():
    assert fmt_resources({"labeler": 1.0, "GPU": 1.0, "CPU": 0.5}) == "{CPU: 0.5, GPU: 1, labeler: 1}"
