"""The label job's pieces that need no actors: config loading, sharding, atomic shard files,
the resume manifest, the context-fit check and the summary."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from rlaif_ray.config import ConfigError
from rlaif_ray.driver.label import (
    SHARD_COLUMNS, check_labeler_context, load_label_config, prepare_output, shard_bounds, shard_done, shard_path,
    summarize_labels, write_shard,
)


def _yaml(path, raw):
    path.write_text(yaml.safe_dump(raw))
    return path


def test_label_config_holds_only_what_label_reads(tmp_path):
    cfg = load_label_config(_yaml(tmp_path / "c.yaml", {"model": {"labeler": "some/judge"},
                                                       "label": {"source": "pairs.jsonl"}}), ["label.shard_size=8"])
    assert (cfg.model.labeler, cfg.label.source, cfg.label.shard_size) == ("some/judge", "pairs.jsonl", 8)
    assert not hasattr(cfg.model, "policy") and not hasattr(cfg, "data")
    # A training field in a label config is named, with the verbs that read it.
    with pytest.raises(ConfigError, match=r"(?m)^model.policy: not read by `rlaif-ray label` \(only by train, "):
        load_label_config(_yaml(tmp_path / "d.yaml", {"model": {"labeler": "j", "policy": "p"},
                                                     "label": {"source": "s"}}))


def test_label_config_with_the_old_context_fields_says_what_to_write(tmp_path):
    # Label runs used to size the labeler's context from two training fields.
    old = {"model": {"labeler": "j"}, "data": {"max_prompt_tokens": 64}, "rollout": {"sampling": {"max_new_tokens": 32}}}
    with pytest.raises(ConfigError, match=r"^data.max_prompt_tokens and rollout.sampling.max_new_tokens: .* "
                                          r"remove them and write label.max_pair_tokens: 96$"):
        load_label_config(_yaml(tmp_path / "old.yaml", old))
    with pytest.raises(ConfigError, match=r"^data.max_prompt_tokens: .*write label.max_pair_tokens \(context"):
        load_label_config(_yaml(tmp_path / "half.yaml", {"model": {"labeler": "j"}, "data": {"max_prompt_tokens": 64}}))


def test_label_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"model.labeler: Field required"):
        load_label_config(_yaml(tmp_path / "c.yaml", {"model": {}, "label": {"source": "x"}}))
    with pytest.raises(ConfigError, match=r"label.shard_size: Input should be greater than or equal to 1"):
        load_label_config(_yaml(tmp_path / "c.yaml", {"model": {"labeler": "j"}, "label": {"source": "x", "shard_size": 0}}))
    with pytest.raises(ConfigError, match=r"label.format: Input should be 'generic', 'summarize_from_feedback' or 'hh_rlhf'"):
        load_label_config(_yaml(tmp_path / "c.yaml", {"model": {"labeler": "j"}, "label": {"source": "x", "format": "csv"}}))
    with pytest.raises(ConfigError, match=r"(?m)^label.source: Field required$"):
        load_label_config(_yaml(tmp_path / "c.yaml", {"model": {"labeler": "j"}, "label": {}}))
    with pytest.raises(ConfigError, match="config file not found"):
        load_label_config(tmp_path / "missing.yaml")


def test_shard_bounds():
    assert shard_bounds(33, 16) == [(0, 16), (16, 32), (32, 33)]
    assert shard_bounds(32, 16) == [(0, 16), (16, 32)]


def _pairs(n, lo=0):
    return [{"context": f"c{i}", "response_a": f"a{i}", "response_b": f"b{i}", "human_choice": [0, 1, None][i % 3]}
            for i in range(lo, lo + n)]


def _result(p_ab, p_ba):
    return {"p_a": [(x + 1 - y) / 2 for x, y in zip(p_ab, p_ba)], "p_ab": p_ab, "p_ba": p_ba,
            "rationale_ab": [""] * len(p_ab), "rationale_ba": [""] * len(p_ab)}


def test_write_shard_is_atomic_and_readable(tmp_path):
    path = write_shard(tmp_path, 1, 3, _pairs(3, lo=3), _result([0.9, 0.4, 0.5], [0.2, 0.3, 0.5]))
    assert path.name == "shard-00001.parquet" and [p.name for p in tmp_path.iterdir()] == [path.name]
    table = pq.read_table(path)
    assert tuple(table.column_names) == SHARD_COLUMNS
    d = table.to_pydict()
    assert d["pair_index"] == [3, 4, 5] and d["human_choice"] == [0, 1, None]
    assert d["p_a"] == pytest.approx([0.85, 0.55, 0.5])
    assert shard_done(tmp_path, 1, 3) and not shard_done(tmp_path, 1, 4) and not shard_done(tmp_path, 0, 3)
    shard_path(tmp_path, 2).write_bytes(b"not parquet")
    assert not shard_done(tmp_path, 2, 3)


def test_summary_over_shards(tmp_path):
    write_shard(tmp_path, 0, 0, _pairs(2), _result([0.9, 0.7], [0.2, 0.6]))   # p_a 0.85, 0.55
    write_shard(tmp_path, 1, 2, _pairs(2, lo=2), _result([0.3, 0.5], [0.8, 0.1]))  # p_a 0.25, 0.7
    s = summarize_labels(tmp_path, 2)
    # human choices 0, 1, None, 0: 0.85→A ✓, 0.55→A ✗ (human B), 0.7→A ✓ → 2/3
    assert s == pytest.approx({"n_pairs": 4, "mean_p_a": 2.35 / 4, "position_consistency": 0.5, "n_human": 3,
                               "labeler_alignment": 2 / 3})


def test_manifest_refuses_other_labels(tmp_path):
    out = tmp_path / "labels"
    m = {"pairs_sha256": "abc", "n_pairs": 32, "shard_size": 16, "labeler": {"model": "j"}, "source": "x", "format": "generic"}
    prepare_output(out, m)
    (out / ".shard-00000.parquet.tmp-123").write_bytes(b"half")  # left by a killed run
    prepare_output(out, dict(m, source="moved/x"))  # same pairs from another path: fine
    assert not list(out.glob(".shard-*")) and json.loads((out / "manifest.json").read_text())["source"] == "moved/x"
    with pytest.raises(ConfigError, match=r"label.output_dir: .* holds labels of different shard_size \(was shard_size=16\)"):
        prepare_output(out, dict(m, shard_size=8))
    with pytest.raises(ConfigError, match=r"different pairs_sha256, labeler"):
        prepare_output(out, dict(m, pairs_sha256="def", labeler={"model": "k"}))


def test_context_check_fails_fast_with_the_number_to_set(tiny_models, tmp_path, monkeypatch):
    cfg = load_label_config(_yaml(tmp_path / "c.yaml", {
        "model": {"labeler": str(tiny_models["labeler"])}, "label": {"source": "x", "max_pair_tokens": 32}}))
    short = [{"context": "Describe the sea.", "response_a": "The sea is warm.", "response_b": "Grey sea.", "human_choice": 0}]
    check_labeler_context(cfg, short)  # fits in 512 + 32, capped at the model's 512 positions
    long = short + [dict(short[0], response_a=" ".join(["the warm sea"] * 200))]
    with pytest.raises(ConfigError, match=r"label.source: pair 1's labeler prompt needs \d+ tokens, but the labeler model .* has only 512 positions"):
        check_labeler_context(cfg, long)
    # A model with more positions: the engine's budget (512 + 32 = 544) is what is short.
    import rlaif_ray.modeling

    monkeypatch.setattr(rlaif_ray.modeling, "max_positions", lambda *a: 4096)
    with pytest.raises(ConfigError, match=r"label.max_pair_tokens: pair 1's .* engine gets 544 .*; raise label.max_pair_tokens by \d+"):
        check_labeler_context(cfg, long)
