"""Run dir guard (refuse / overwrite / resume) and the JSONL metrics writer and reader."""

from __future__ import annotations

import json

import pytest
import yaml

from rlaif_ray.config import load_config
from rlaif_ray.run_dir import (
    MetricsWriter,
    RunDirError,
    prepare_run_dir,
    read_metrics,
    rewrite_jsonl,
    rewrite_metrics,
)


@pytest.fixture
def cfg(repo_root):
    return load_config(repo_root / "configs/local.yaml")


def _existing_run(run_dir):
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("old: run\n")
    (run_dir / "metrics.jsonl").write_text('{"iteration": 0}\n')
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "it-1").write_text("weights")


def _snapshot(run_dir):
    return {str(p.relative_to(run_dir)): (p.read_text() if p.is_file() else None) for p in run_dir.rglob("*")}


def test_new_run_dir_gets_the_config(tmp_path, cfg):
    run_dir = tmp_path / "runs" / "a"  # parents are created
    prepare_run_dir(run_dir, cfg, resume=False, overwrite=False)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["name"] == "local"
    # An existing but empty dir is fine too.
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_run_dir(empty, cfg, resume=False, overwrite=False)
    assert (empty / "config.yaml").exists()


def test_existing_run_is_refused_and_left_alone(tmp_path, cfg):
    run_dir = tmp_path / "run"
    _existing_run(run_dir)
    before = _snapshot(run_dir)
    with pytest.raises(RunDirError, match=r"already holds a run; pass --resume .* or --overwrite .*nothing was changed"):
        prepare_run_dir(run_dir, cfg, resume=False, overwrite=False)
    assert _snapshot(run_dir) == before


def test_any_file_counts_as_a_run(tmp_path, cfg):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me")
    with pytest.raises(RunDirError):
        prepare_run_dir(run_dir, cfg, resume=False, overwrite=False)
    assert (run_dir / "notes.txt").read_text() == "keep me"


def test_overwrite_replaces_the_run(tmp_path, cfg):
    run_dir = tmp_path / "run"
    _existing_run(run_dir)
    prepare_run_dir(run_dir, cfg, resume=False, overwrite=True)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["name"] == "local"


def test_resume_needs_config_yaml_and_changes_nothing(tmp_path, cfg):
    missing = tmp_path / "nothing"
    with pytest.raises(RunDirError, match=r"--resume .*nothing: no run there \(config.yaml missing\)"):
        prepare_run_dir(missing, cfg, resume=True, overwrite=False)
    assert not missing.exists()
    run_dir = tmp_path / "run"
    _existing_run(run_dir)
    before = _snapshot(run_dir)
    prepare_run_dir(run_dir, cfg, resume=True, overwrite=False)  # no error
    assert _snapshot(run_dir) == before  # the stored config is kept, not rewritten


def test_metrics_writer_appends_json_lines(tmp_path):
    writer = MetricsWriter(tmp_path, "t")
    writer.write({"iteration": 0, "reward/mean": 1.5, "kl/mean": float("nan"), "stage": "done"})
    writer.write({"iteration": 1, "reward/mean": float("inf"), "data/samples": 64})
    writer.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert "NaN" not in lines[0] and "Infinity" not in lines[1]  # strict JSON
    assert json.loads(lines[0]) == {"iteration": 0, "reward/mean": 1.5, "kl/mean": None, "stage": "done"}
    assert read_metrics(tmp_path) == [
        {"iteration": 0, "reward/mean": 1.5, "kl/mean": None, "stage": "done"},
        {"iteration": 1, "reward/mean": None, "data/samples": 64},
    ]
    assert any((tmp_path / "tensorboard").iterdir())  # TensorBoard events mirror the scalars
    # A second writer (a resumed run) appends rather than truncates.
    again = MetricsWriter(tmp_path, "t")
    again.write({"iteration": 2})
    again.close()
    assert [r["iteration"] for r in read_metrics(tmp_path)] == [0, 1, 2]


def tensorboard_steps(run_dir) -> dict[str, list[tuple[int, float | None]]]:
    """{tag: [(step, scalar or None)]} as TensorBoard's Python backend shows a run dir."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, float(make_ndarray(e.tensor_proto)) if tag != "samples/text_summary" else None)
                  for e in events.Tensors(tag)] for tag in events.Tags()["tensors"]}


def test_resumed_writer_hides_the_redone_steps_in_tensorboard(tmp_path):
    sample = {"prompt": "p", "response": "r", "reward": 0.5, "kl": 0.1, "response_tokens": 1}
    first = MetricsWriter(tmp_path, "t")  # wrote iterations 1..3, then died; its checkpoint is at 2
    for i in (1, 2, 3):
        first.write({"iteration": i, "reward/mean": float(i)})
        first.write_samples(i, [sample])
    first.close()
    resumed = MetricsWriter(tmp_path, "t", first_step=3)  # redoes 3, then runs 4
    for i in (3, 4):
        resumed.write({"iteration": i, "reward/mean": 10.0 * i})
        resumed.write_samples(i, [sample])
    resumed.close()
    assert len(list((tmp_path / "tensorboard").iterdir())) == 2  # one event file per process
    steps = tensorboard_steps(tmp_path)
    assert steps["reward/mean"] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]  # step 3 once: the redone value
    assert [s for s, _ in steps["samples/text_summary"]] == [1, 2, 3, 4]


def test_read_metrics_without_a_file_and_with_blank_lines(tmp_path):
    assert read_metrics(tmp_path) == []
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 0}\n\n{"iteration": 1}\n')
    assert read_metrics(tmp_path) == [{"iteration": 0}, {"iteration": 1}]


def test_rewrite_metrics_moves_discarded_rows(tmp_path):
    rows = [{"iteration": i} for i in range(4)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rewrite_metrics(tmp_path, keep=rows[:2], discarded=rows[2:])
    assert read_metrics(tmp_path) == rows[:2]
    moved = (tmp_path / "metrics.discarded.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in moved] == rows[2:]
    assert not (tmp_path / "metrics.jsonl.tmp").exists()


def test_rewrite_jsonl_filters_rows(tmp_path):
    path = tmp_path / "samples.jsonl"
    rewrite_jsonl(path, lambda r: True)  # a missing file is left missing
    assert not path.exists()
    path.write_text('{"iteration": 0}\n{"iteration": 3}\n{"iteration": 1}\n')
    rewrite_jsonl(path, lambda r: r["iteration"] < 2)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"iteration": 0}, {"iteration": 1}]
