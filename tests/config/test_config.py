"""Run config: loading, field and cross-field validation, overrides, derived values, schema."""

from __future__ import annotations

import re

import pytest

from rlaif_ray.config import (
    ConfigError,
    Resources,
    apply_overrides,
    config_from_dict,
    describe_schema,
    dump_config,
    infer_verb,
    load_config,
)

LOCAL = "configs/local.yaml"


@pytest.fixture(autouse=True)
def _repo_cwd(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)


def test_local_yaml_loads():
    cfg = load_config(LOCAL)
    assert cfg.run.name == "local"
    assert cfg.ppo.algorithm == "ppo"
    assert cfg.kl.coef == 0.02
    # 16 prompts × 4 samples = 64; minibatch 32 divides 64 and is divisible by 2 learners.
    assert cfg.samples_per_iteration == 64
    # A dumped config validates back to the same config.
    assert config_from_dict(__import__("yaml").safe_load(dump_config(cfg))) == cfg


@pytest.mark.parametrize(
    "override, path, why",
    [
        ("run.bogus=1", "run.bogus", "unknown key"),
        ("bogus_section.x=1", "bogus_section", "unknown key"),
        ("run.iterations=many", "run.iterations", "valid integer"),
        ("rollout.num_actors=-1", "rollout.num_actors", "greater than or equal to 1"),
        ("learner.resources.num_gpus=-0.5", "learner.resources.num_gpus", "greater than or equal to 0"),
        ("ppo.clip=0", "ppo.clip", "greater than 0"),
        ("ppo.clip=-0.1", "ppo.clip", "greater than 0"),
        ("ppo.algorithm=dpo", "ppo.algorithm", "'ppo', 'grpo', 'rloo' or 'reinforce_pp'"),
        ("reward.sources=[{kind: nope}]", "reward.sources.0.kind", "labeler_direct"),
        ("pipeline.max_staleness=-1", "pipeline.max_staleness", "greater than or equal to 0"),
        ("ppo.off_policy_correction=is", "ppo.off_policy_correction", "'none', 'tis' or 'decoupled'"),
        ("ppo.importance_cap=1", "ppo.importance_cap", "greater than 1"),
        ("rollout.resources.cpu_affinity=[]", "rollout.resources.cpu_affinity", "at least 1"),
    ],
)
def test_field_errors_name_the_path(override, path, why):
    with pytest.raises(ConfigError) as err:
        load_config(LOCAL, [override])
    msg = str(err.value)
    assert msg.startswith(LOCAL + ":")  # names the file
    assert re.search(rf"^{re.escape(path)}: .*{re.escape(why)}", msg, re.M), msg


@pytest.mark.parametrize(
    "overrides, path",
    [
        (["labeler.score_max=5"], "labeler.score_min/score_max"),
        (["labeler.score_min=0"], "labeler.score_min/score_max"),
        # 1 sample: 16 samples per iteration, so shrink the minibatch to isolate the rule.
        (["ppo.algorithm=grpo", "rollout.sampling.samples_per_prompt=1", "ppo.minibatch_size=16"],
         "rollout.sampling.samples_per_prompt"),
        (["ppo.algorithm=rloo", "rollout.sampling.samples_per_prompt=1", "ppo.minibatch_size=16"],
         "rollout.sampling.samples_per_prompt"),
        # 16 × 4 = 64 samples; 24 does not divide 64 (and 24 % 2 == 0, so only this rule fires).
        (["ppo.minibatch_size=24"], "ppo.minibatch_size"),
        # 64 % 32 == 0 but 32 % 3 != 0.
        (["learner.num_workers=3"], "ppo.minibatch_size"),
        (["kl.controller=adaptive"], "kl.target"),
        (["sync.backend=nccl"], "sync.backend"),
        (["learner.backend=nccl"], "learner.backend"),
        (["pipeline.max_staleness=1"], "pipeline.max_staleness"),
        (["ppo.old_logprobs=rollout", "pipeline.max_staleness=1", "pipeline.allow_uncorrected=true"], "ppo.old_logprobs"),
        (["ppo.old_logprobs=rollout", "ppo.off_policy_correction=tis"], "ppo.old_logprobs"),
        (["chaos.faults=[{role: reference, actor: 1, iteration: 1}]"], "chaos.faults.0.actor"),
    ],
)
def test_cross_field_errors_name_the_path(overrides, path):
    with pytest.raises(ConfigError) as err:
        load_config(LOCAL, overrides)
    msg = str(err.value)
    assert f"\n{path}: " in msg, msg
    assert "(top level)" not in msg and "Value error" not in msg


def test_cross_field_messages_say_why():
    with pytest.raises(ConfigError, match=r"must divide the samples per iteration \(16 prompts × 4 samples = 64\)"):
        load_config(LOCAL, ["ppo.minibatch_size=24"])
    with pytest.raises(ConfigError, match=r"divisible by learner.num_workers \(3\)"):
        load_config(LOCAL, ["learner.num_workers=3"])
    with pytest.raises(ConfigError, match=r"grpo needs ≥ 2 samples"):
        load_config(LOCAL, ["ppo.algorithm=grpo", "rollout.sampling.samples_per_prompt=1",
                            "ppo.minibatch_size=16"])
    with pytest.raises(ConfigError, match=r"got 1\.\.5"):
        load_config(LOCAL, ["labeler.score_max=5"])


def test_stale_samples_need_a_correction_or_an_explicit_yes():
    with pytest.raises(ConfigError, match=r"set ppo.off_policy_correction to tis or decoupled \(or pipeline.allow_uncorrected"):
        load_config(LOCAL, ["pipeline.max_staleness=2"])
    assert load_config(LOCAL, ["pipeline.max_staleness=2", "ppo.off_policy_correction=decoupled"]).pipeline.max_staleness == 2
    assert load_config(LOCAL, ["pipeline.max_staleness=1", "pipeline.allow_uncorrected=true"]).ppo.off_policy_correction == "none"
    assert load_config(LOCAL, []).pipeline.max_staleness == 0  # the synchronous loop by default


def test_cross_field_rules_accept_valid_variants():
    # grpo with the default 4 samples, adaptive KL with a target, nccl with GPUs everywhere.
    cfg = load_config(LOCAL, ["ppo.algorithm=grpo", "kl.controller=adaptive", "kl.target=6.0",
                              "sync.backend=nccl", "learner.resources.num_gpus=1",
                              "rollout.resources.num_gpus=1"])
    assert cfg.kl.target == 6.0 and cfg.sync.backend == "nccl"


def test_nccl_sync_needs_gpus_on_both_roles():
    with pytest.raises(ConfigError, match=r"\nsync.backend: "):
        load_config(LOCAL, ["sync.backend=nccl", "learner.resources.num_gpus=1"])


def test_missing_required_sections():
    with pytest.raises(ConfigError) as err:
        config_from_dict({}, "x.yaml")
    assert str(err.value) == "x.yaml:\nmodel: Field required\ndata: Field required"


def test_toy_paths_that_left_the_library_say_where_they_went():
    # The toy task moved from rlaif_ray/toy_task.py to toy/task.py: an old reward function or
    # eval judge path fails at load, in one line, with the path to write instead.
    old = "rlaif_ray.toy_task:rule_score"
    with pytest.raises(ConfigError) as err:
        load_config(LOCAL, [f"reward.sources=[{{kind: function, function: {old}}}]"])
    line = str(err.value).splitlines()[-1]
    assert line == (f"reward.sources.0: function: {old} moved to toy.task:rule_score "
                    "(the toy world left the library); write that instead")
    with pytest.raises(ConfigError, match=r"eval.function_judge: .* moved to toy.task:rule_score"):
        load_config("configs/eval-toy.yaml", [f"eval.function_judge={old}"], "eval")
    new = load_config(LOCAL, ["reward.sources=[{kind: function, function: toy.task:rule_score}]"])
    assert new.reward.sources[0].label == "rule_score"


def test_eval_prompts_is_required():
    eval_toy = "configs/eval-toy.yaml"
    with pytest.raises(ConfigError, match=r"(?m)^eval.prompts: Field required$"):
        load_config(eval_toy, ["eval={policy_a: runs/x/hf}"], "eval")
    # null no longer means the toy task's held-out split
    with pytest.raises(ConfigError, match=r"(?m)^eval.prompts: required: a held-out prompts file .*prompts-heldout.jsonl"):
        load_config(eval_toy, ["eval.prompts=null"], "eval")
    cfg = load_config(eval_toy, ["eval.prompts=held.jsonl"], "eval")
    assert cfg.eval.prompts == "held.jsonl" and cfg.eval.num_prompts == 64


def test_config_yaml_of_older_runs_still_loads(tmp_path):
    """A training run's config.yaml written before 2026-12 holds every verb's section at its
    defaults (eval's with policy_a and prompts null, rejection sampling's with its old fields):
    they are dropped, so those runs still resume."""
    import yaml

    raw = yaml.safe_load(dump_config(load_config(LOCAL)))
    raw["reward_model_train"] = {"data": None, "labels": "soft", "output_dir": "runs/reward-model"}
    raw["dpo"] = {"data": None, "labels": "hard", "beta": 0.1, "output_dir": "runs/dpo"}
    raw["eval"] = {"policy_a": None, "policy_b": None, "prompts": None, "prompt_column": "prompt",
                   "num_prompts": 64, "function_judge": None, "output_dir": "runs/eval"}
    raw["rejection_sampling"] = {"rounds": 3, "samples_per_prompt": 4, "prompts_per_round": 16, "sft_epochs": 1,
                                 "minibatch_size": 8, "lr": 1e-5, "output_dir": "runs/rejection-sampling"}
    raw["label"] = {"source": None, "format": "generic", "output_dir": "runs/labels", "shard_size": 256}
    old = tmp_path / "config.yaml"
    old.write_text(yaml.safe_dump(raw))
    assert load_config(old) == load_config(LOCAL)
    assert infer_verb(raw) == "train"  # what `rlaif-ray config validate` reads it as
    # A hand-written training config with one stray section is refused, naming the verb that reads it.
    raw.pop("dpo")
    old.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"(?m)^label: not read by `rlaif-ray train` \(only by label\); remove it$"):
        load_config(old)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(bad)


def test_top_level_not_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


# --------------------------------------------------------------------------- overrides


def test_apply_overrides_parses_yaml_values_and_creates_sections():
    raw = {"run": {"name": "a"}}
    out = apply_overrides(raw, [
        "run.seed=3",            # int
        "kl.coef=0.1",           # new section created, float
        "sync.probe=false",      # bool
        "rollout.sampling.stop=[x, y]",  # two levels created, list
        "run.name=b=c",          # only the first '=' splits
        "ray.address=null",      # None
    ])
    assert out is raw
    assert raw == {
        "run": {"name": "b=c", "seed": 3},
        "kl": {"coef": 0.1},
        "sync": {"probe": False},
        "rollout": {"sampling": {"stop": ["x", "y"]}},
        "ray": {"address": None},
    }


def test_apply_overrides_bad_forms():
    with pytest.raises(ConfigError, match=r"--set 'foo': expected key.path=value"):
        apply_overrides({}, ["foo"])
    with pytest.raises(ConfigError, match=r"--set run.name.x: name is not a section"):
        apply_overrides({"run": {"name": "a"}}, ["run.name.x=1"])


def test_apply_overrides_reach_list_items():
    raw = {"reward": {"sources": [{"kind": "labeler_direct"}, {"kind": "function", "weight": 0.0}]}}
    out = apply_overrides(raw, ["reward.sources.1.weight=2.5", "reward.sources.0.model=rm/path"])
    assert out["reward"]["sources"] == [{"kind": "labeler_direct", "model": "rm/path"},
                                        {"kind": "function", "weight": 2.5}]
    with pytest.raises(ConfigError, match=r"--set reward.sources.2.weight: '2' is not an index of a list of 2"):
        apply_overrides(raw, ["reward.sources.2.weight=1"])
    with pytest.raises(ConfigError, match=r"'x' is not an index"):
        apply_overrides(raw, ["reward.sources.x.weight=1"])


def test_overrides_through_load_config():
    cfg = load_config(LOCAL, ["ppo.algorithm=rloo", "learner.lr=1e-4", "run.seed=7"])
    assert (cfg.ppo.algorithm, cfg.learner.lr, cfg.run.seed) == ("rloo", 1e-4, 7)


# --------------------------------------------------------------------------- derived values


def test_derived_properties():
    cfg = load_config(LOCAL, ["data.prompts_per_iteration=3", "rollout.sampling.samples_per_prompt=2",
                              "ppo.minibatch_size=2"])
    assert cfg.samples_per_iteration == 6  # 3 prompts × 2 samples
    assert cfg.uses_critic is True
    assert cfg.uses_gpus is False
    assert cfg.dist_backend == "gloo"  # auto without GPUs

    assert load_config(LOCAL, ["ppo.algorithm=grpo"]).uses_critic is False
    assert load_config(LOCAL, ["ppo.algorithm=reinforce_pp"]).uses_critic is False
    assert load_config(LOCAL, ["learner.resources.num_gpus=1"]).dist_backend == "nccl"  # auto with GPUs
    assert load_config(LOCAL, ["learner.resources.num_gpus=1", "learner.backend=gloo"]).dist_backend == "gloo"


def test_resources_as_bundle():
    assert Resources().as_bundle() == {"CPU": 1.0}
    assert Resources(num_cpus=2, num_gpus=0.5, custom={"rollout": 1}).as_bundle() == {
        "CPU": 2.0, "rollout": 1.0, "GPU": 0.5}
    # Zero entries are left out (Ray rejects zero-size bundle entries).
    assert Resources(num_cpus=0, num_gpus=1, custom={"x": 0}).as_bundle() == {"GPU": 1.0}


# --------------------------------------------------------------------------- schema


def _schema_fields(model, prefix=""):
    import typing

    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        yield prefix + name
        # A section is typed `Section` or `Section | None` (e.g. eval, eval.harmless).
        types = [t for t in typing.get_args(field.annotation) if t is not type(None)] or [field.annotation]
        if len(types) == 1 and isinstance(types[0], type) and issubclass(types[0], BaseModel):
            yield from _schema_fields(types[0], prefix + name + ".")


@pytest.mark.parametrize("verb", ["train", "label", "train-rm", "dpo", "eval", "rejection-sampling"])
def test_describe_schema_covers_every_field_with_a_description(verb):
    from rlaif_ray.config import VERB_CONFIGS

    lines = describe_schema(VERB_CONFIGS[verb])
    paths, missing = [], []
    for line in lines:
        m = re.match(r"^(\S+) = .*?  # (.*)$", line) or re.match(r"^(\S+):(?:  (.*))?$", line)
        assert m, f"unparseable schema line: {line!r}"
        paths.append(m.group(1))
        if not (m.group(2) or "").strip():
            missing.append(m.group(1))
    assert not missing, f"fields without a description: {missing}"
    assert paths == list(_schema_fields(VERB_CONFIGS[verb]))


def test_describe_schema_shows_nesting_required_fields_and_defaults():
    from rlaif_ray.config import EvalConfig

    lines = describe_schema()
    assert "rollout.sampling.samples_per_prompt = 4  # Responses generated per prompt (the group size)." in lines
    assert any(line.startswith("model.policy = required  # ") for line in lines)
    assert any(line.startswith("eval.prompts = required  # Held-out prompts file") for line in describe_schema(EvalConfig))


# --------------------------------------------------------------------------- one config type per verb


@pytest.mark.parametrize("example, verb", [("local.yaml", "train"), ("label-toy.yaml", "label"),
                                          ("train-rm-toy.yaml", "train-rm"), ("dpo-toy.yaml", "dpo"),
                                          ("eval-toy.yaml", "eval"), ("rejection-sampling-toy.yaml", "rejection-sampling")])
def test_config_validate_reads_each_example_as_its_verbs_config(example, verb, capsys):
    from rlaif_ray.cli import main

    assert main(["config", "validate", f"configs/{example}"]) == 0
    import yaml

    from rlaif_ray.config import VERB_CONFIGS

    out = capsys.readouterr().out
    assert out.startswith(f"# a valid config of `rlaif-ray {verb}`\n")
    assert list(yaml.safe_load(out)) == list(VERB_CONFIGS[verb].model_fields)


def test_config_schema_prints_only_what_the_verb_reads(capsys):
    from rlaif_ray.cli import main

    assert main(["config", "schema", "label"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "# `rlaif-ray label`: AI preference labels for a dataset of response pairs."
    top = {line.split(":")[0] for line in out.splitlines()[1:] if ":" in line and "." not in line.split(":")[0]}
    assert top == {"run", "ray", "model", "labeler", "label"}
    assert "model.labeler = required" in out and "model.policy" not in out and "data.source" not in out


def test_a_file_holding_two_verbs_sections_is_refused():
    from rlaif_ray.config import infer_verb

    assert infer_verb({"model": {}, "dpo": {}}) == "dpo" and infer_verb({"ppo": {}}) == "train"
    with pytest.raises(ConfigError, match=r"^sections reward_model_train, dpo: one config is for one verb"):
        infer_verb({"dpo": {}, "reward_model_train": {}})


def test_rollout_old_logprobs_only_on_the_synchronous_uncorrected_loop():
    with pytest.raises(ConfigError, match=r"an older policy than the learner's when pipeline.max_staleness is 2"):
        load_config(LOCAL, ["ppo.old_logprobs=rollout", "pipeline.max_staleness=2", "ppo.off_policy_correction=none",
                            "pipeline.allow_uncorrected=true"])
    with pytest.raises(ConfigError, match=r"off_policy_correction decoupled has nothing to correct"):
        load_config(LOCAL, ["ppo.old_logprobs=rollout", "ppo.off_policy_correction=decoupled"])
    assert load_config(LOCAL, ["ppo.old_logprobs=rollout"]).ppo.old_logprobs == "rollout"
    assert load_config(LOCAL, []).ppo.old_logprobs == "learner"  # the default recomputes π_old
