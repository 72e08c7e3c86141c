"""One typed, validated config per run.

A run is one YAML file parsed into `RunConfig`. Every default lives here, every field has a
one-line description (`rlaif-ray config schema` prints them), unknown keys are rejected, and
cross-field rules are checked before any actor starts. Errors name the field path:

    config error: ppo.clip: Input should be greater than 0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A run config that cannot be used; the message names every bad field path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Resources(_Strict):
    """What one actor of a role reserves; Ray's placement groups and autoscaler read it."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per actor (0 on CPU).")
    custom: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources per actor, e.g. {rollout: 1} to pin a role to a node type.",
    )

    def as_bundle(self) -> dict[str, float]:
        """The placement-group bundle of one actor."""
        bundle = {"CPU": self.num_cpus, **self.custom}
        if self.num_gpus:
            bundle["GPU"] = self.num_gpus
        return {k: v for k, v in bundle.items() if v > 0}


class RunSection(_Strict):
    name: str = Field("rlaif", description="Human-readable run name (metrics, TensorBoard).")
    seed: int = Field(0, description="Seed of prompts order, sampling, minibatches and init.")
    iterations: int = Field(10, ge=1, description="PPO iterations to run.")
    checkpoint_every: int = Field(0, ge=0, description="Checkpoint every k iterations (0: only at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="How many most recent checkpoints to keep.")
    call_timeout_s: float = Field(600.0, gt=0, description="Timeout of one cross-actor call; past it the actor is treated as failed.")
    startup_timeout_s: float = Field(900.0, gt=0, description="Timeout for reserving resources and starting an actor (autoscaling can take minutes).")
    max_actor_restarts: int = Field(3, ge=0, description="How often a dead rollout/labeler actor is replaced before the run stops.")


class RayInit(_Strict):
    address: str | None = Field(None, description="Cluster address; null starts a private local Ray (local mode), 'auto' joins the cluster a job runs in.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray (local mode only); null: all.")
    temp_dir: str | None = Field(None, description="Private Ray temp dir for local mode; null: a fresh one under /tmp.")
    object_store_mib: int = Field(1024, ge=64, description="Object store size of the local Ray, MiB.")
    env_vars: dict[str, str] = Field(default_factory=dict, description="Extra environment variables for every actor (runtime_env).")


class ModelSection(_Strict):
    policy: str = Field(..., description="Policy (and reference) model: HF hub name or local path.")
    labeler: str = Field(..., description="AI labeler model: HF hub name or local path.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Dtype of every engine.")
    trust_remote_code: bool = Field(False, description="Passed to from_pretrained and vLLM.")


class DataSection(_Strict):
    source: str = Field(..., description="Prompts: a .jsonl/.json/.parquet file, a directory of Parquet, or an HF dataset name.")
    split: str = Field("train", description="Dataset split when `source` is an HF dataset name.")
    prompt_column: str = Field("prompt", description="Column holding the prompt text.")
    prompts_per_iteration: int = Field(8, ge=1, description="Distinct prompts per PPO iteration.")
    max_prompt_tokens: int = Field(128, ge=1, description="Prompts longer than this are truncated or dropped (counted).")
    long_prompts: Literal["truncate", "drop"] = Field("truncate", description="What to do with a prompt over max_prompt_tokens.")
    chat_template: bool = Field(False, description="Wrap prompts with the tokenizer's chat template.")


class Sampling(_Strict):
    samples_per_prompt: int = Field(4, ge=1, description="Responses generated per prompt (the group size).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(-1, description="Top-k sampling; -1 disables.")
    max_new_tokens: int = Field(32, ge=1, description="Longest response, tokens.")
    stop: list[str] = Field(default_factory=list, description="Stop strings (eos always stops).")


class RolloutSection(_Strict):
    num_actors: int = Field(2, ge=1, description="vLLM rollout actors.")
    sampling: Sampling = Field(default_factory=Sampling, description="Generation settings.")
    kv_cache_mib: int = Field(512, ge=16, description="KV cache per engine, MiB (CPU: keeps engines from taking all RAM).")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM's GPU memory share (GPU only).")
    resources: Resources = Field(default_factory=Resources, description="Per-actor resources.")


class LabelerSection(_Strict):
    num_actors: int = Field(1, ge=1, description="vLLM labeler actors.")
    task: Literal["generic", "summarization", "helpful", "harmless"] = Field("generic", description="Prompt template family.")
    preamble: Literal["base", "detailed"] = Field("base", description="One-line or detailed instructions.")
    few_shot: list[dict[str, Any]] = Field(default_factory=list, description="Exemplars: {context, responses, label, rationale?}.")
    chain_of_thought: bool = Field(False, description="Decode a rationale first, then score after it.")
    rationale_max_tokens: int = Field(64, ge=1, description="Longest rationale (chain of thought).")
    score_min: int = Field(1, description="Lowest score the labeler is asked for (direct reward needs 1).")
    score_max: int = Field(10, description="Highest score (direct reward needs 10).")
    batch_size: int = Field(64, ge=1, description="Samples per engine call.")
    kv_cache_mib: int = Field(512, ge=16, description="KV cache of the labeler engine, MiB.")
    resources: Resources = Field(default_factory=Resources, description="Per-actor resources.")


class RewardSource(_Strict):
    kind: Literal["labeler_direct", "function"] = Field(
        "labeler_direct", description="labeler_direct: the AI labeler's score; function: a Python function of (prompt, response).")
    weight: float = Field(1.0, description="Weight of this source in the summed reward (0: logged only, e.g. a ground-truth check).")
    function: str | None = Field(None, description="For kind function: 'package.module:function' returning a float.")
    name: str | None = Field(None, description="Metric name of this source (default: its kind, or the function's name).")

    @model_validator(mode="after")
    def _function_needs_path(self) -> "RewardSource":
        if self.kind == "function" and (not self.function or ":" not in self.function):
            raise ValueError("function: kind function needs function: 'package.module:function'")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return self.function.split(":")[1] if self.kind == "function" else self.kind


class RewardSection(_Strict):
    sources: list[RewardSource] = Field(default_factory=lambda: [RewardSource()], min_length=1, description="Reward sources, summed with their weights.")
    objective: Literal["kl_penalty", "paper"] = Field("kl_penalty", description="kl_penalty: r − β·KL; paper: (1−β)·r − β·KL (RLAIF eq. 2).")


class ReferenceSection(_Strict):
    resources: Resources = Field(default_factory=Resources, description="Resources of the reference scorer.")
    batch_size: int = Field(32, ge=1, description="Sequences per forward pass.")


class LearnerSection(_Strict):
    num_workers: int = Field(2, ge=1, description="Data-parallel DeepSpeed workers.")
    zero_stage: Literal[0, 1, 2, 3] = Field(0, description="DeepSpeed ZeRO stage.")
    lr: float = Field(1e-5, gt=0, description="Policy learning rate (AdamW).")
    critic_lr: float = Field(5e-5, gt=0, description="Critic learning rate (PPO only).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="torch.distributed backend; auto: nccl with GPUs, gloo on CPU.")
    forward_batch_size: int = Field(16, ge=1, description="Sequences per forward when computing old logprobs/values.")
    resources: Resources = Field(default_factory=Resources, description="Per-worker resources.")


class PPOSection(_Strict):
    algorithm: Literal["ppo", "grpo", "rloo", "reinforce_pp"] = Field("ppo", description="Advantage estimator; ppo uses a critic.")
    epochs: int = Field(1, ge=1, description="Passes over each batch.")
    minibatch_size: int = Field(16, ge=1, description="Sequences per optimiser step, over all learners.")
    clip: float = Field(0.2, gt=0, description="Policy ratio clip ε.")
    value_clip: float = Field(0.2, gt=0, description="Value clip (PPO).")
    value_coef: float = Field(0.5, ge=0, description="Value loss weight (PPO).")
    entropy_coef: float = Field(0.0, ge=0, description="Entropy bonus weight.")
    gamma: float = Field(1.0, gt=0, le=1, description="Discount.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ.")


class KLSection(_Strict):
    estimator: Literal["k1", "k2", "k3"] = Field("k1", description="Per-token KL estimator.")
    placement: Literal["reward", "loss"] = Field("reward", description="KL as a per-token reward penalty or as a loss term.")
    controller: Literal["fixed", "adaptive"] = Field("fixed", description="Fixed β or adaptive (Ziegler et al. 2019).")
    coef: float = Field(0.05, ge=0, description="β (initial β when adaptive).")
    target: float | None = Field(None, gt=0, description="Target KL per sequence (adaptive).")
    horizon: int = Field(10000, ge=1, description="Adaptive controller horizon, samples.")


class SyncSection(_Strict):
    backend: Literal["object_store", "nccl"] = Field("object_store", description="How new weights reach the rollout engines.")
    bucket_mib: int = Field(64, ge=1, description="Bucket size of the gathered weights, MiB.")
    timeout_s: float = Field(120.0, gt=0, description="A sync past this raises, naming the actor.")
    probe: bool = Field(True, description="Score a fixed sequence on engine 0 and the learner after each sync.")


class Fault(_Strict):
    """One injected failure, for checking recovery (the run's own chaos test)."""

    role: Literal["rollout", "labeler", "learner"] = Field(..., description="Which role to hit.")
    actor: int = Field(0, ge=0, description="Index of the actor in its pool.")
    iteration: int = Field(..., ge=1, description="Iteration (1-based) during which it strikes.")
    kind: Literal["kill", "stall"] = Field("kill", description="kill: the actor dies mid-call; stall: it stops answering for stall_s.")
    stall_s: float = Field(60.0, gt=0, description="How long a stall lasts.")


class ChaosSection(_Strict):
    faults: list[Fault] = Field(default_factory=list, description="Failures to inject (empty in real runs).")


class RunConfig(_Strict):
    """The whole run. Sections mirror the roles of the system."""

    run: RunSection = Field(default_factory=RunSection, description="Run length, seed, checkpoints and fault tolerance.")
    ray: RayInit = Field(default_factory=RayInit, description="How Ray is started or joined.")
    model: ModelSection = Field(..., description="Policy and labeler models.")
    data: DataSection = Field(..., description="Prompt dataset and tokenization limits.")
    rollout: RolloutSection = Field(default_factory=RolloutSection, description="vLLM rollout actors and sampling.")
    labeler: LabelerSection = Field(default_factory=LabelerSection, description="AI labeler actors and prompts.")
    reward: RewardSection = Field(default_factory=RewardSection, description="Reward sources and objective.")
    reference: ReferenceSection = Field(default_factory=ReferenceSection, description="Reference-policy scorer.")
    learner: LearnerSection = Field(default_factory=LearnerSection, description="DeepSpeed learner workers and optimiser.")
    ppo: PPOSection = Field(default_factory=PPOSection, description="Advantage estimator and PPO loss settings.")
    kl: KLSection = Field(default_factory=KLSection, description="KL penalty to the reference policy.")
    sync: SyncSection = Field(default_factory=SyncSection, description="Weight sync from learners to rollout engines.")
    chaos: ChaosSection = Field(default_factory=ChaosSection, description="Fault injection for recovery tests (empty in real runs).")

    @model_validator(mode="after")
    def _cross_field(self) -> "RunConfig":
        errors = list(_cross_field_errors(self))
        if errors:
            raise ValueError("; ".join(errors))
        return self

    # Derived values live here, in one place.
    @property
    def samples_per_iteration(self) -> int:
        return self.data.prompts_per_iteration * self.rollout.sampling.samples_per_prompt

    @property
    def uses_critic(self) -> bool:
        return self.ppo.algorithm == "ppo"

    @property
    def uses_labeler(self) -> bool:
        return any(s.kind == "labeler_direct" for s in self.reward.sources)

    @property
    def uses_gpus(self) -> bool:
        return self.learner.resources.num_gpus > 0

    @property
    def dist_backend(self) -> str:
        if self.learner.backend != "auto":
            return self.learner.backend
        return "nccl" if self.uses_gpus else "gloo"


def _cross_field_errors(c: RunConfig):
    labels = [s.label for s in c.reward.sources]
    if len(set(labels)) != len(labels):
        yield f"reward.sources: source names must be unique, got {labels}"
    if not any(s.weight for s in c.reward.sources):
        yield "reward.sources: at least one source needs a non-zero weight"
    if c.uses_labeler and (c.labeler.score_min, c.labeler.score_max) != (1, 10):
        yield (f"labeler.score_min/score_max: direct RLAIF rewards need the score range 1..10, "
               f"got {c.labeler.score_min}..{c.labeler.score_max}")
    if c.ppo.algorithm in ("grpo", "rloo") and c.rollout.sampling.samples_per_prompt < 2:
        yield f"rollout.sampling.samples_per_prompt: {c.ppo.algorithm} needs ≥ 2 samples per prompt"
    n = c.samples_per_iteration
    if n % c.ppo.minibatch_size:
        yield (f"ppo.minibatch_size: {c.ppo.minibatch_size} must divide the samples per iteration "
               f"({c.data.prompts_per_iteration} prompts × {c.rollout.sampling.samples_per_prompt} samples = {n})")
    if c.ppo.minibatch_size % c.learner.num_workers:
        yield (f"ppo.minibatch_size: {c.ppo.minibatch_size} must be divisible by learner.num_workers "
               f"({c.learner.num_workers}) for data parallelism")
    if c.kl.controller == "adaptive" and c.kl.target is None:
        yield "kl.target: the adaptive KL controller needs a target KL"
    if c.sync.backend == "nccl" and not (c.uses_gpus and c.rollout.resources.num_gpus > 0):
        yield "sync.backend: nccl needs GPUs on the learner and rollout roles (resources.num_gpus > 0)"
    sizes = {"rollout": c.rollout.num_actors, "labeler": c.labeler.num_actors, "learner": c.learner.num_workers}
    for k, f in enumerate(c.chaos.faults):
        if f.actor >= sizes[f.role]:
            yield f"chaos.faults.{k}.actor: {f.role} has {sizes[f.role]} actor(s), no index {f.actor}"
        if f.iteration > c.run.iterations:
            yield f"chaos.faults.{k}.iteration: the run has only {c.run.iterations} iterations"
    if c.learner.backend == "nccl" and not c.uses_gpus:
        yield "learner.backend: nccl needs learner.resources.num_gpus > 0"


# --------------------------------------------------------------------------- loading


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
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def config_from_dict(raw: dict, source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}:\n{_format_validation_error(err)}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate one run YAML. Relative local paths resolve against the CWD."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return config_from_dict(apply_overrides(raw, overrides or []), str(path))


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def describe_schema(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """One line per field: dotted path, type, default and description."""
    lines = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines.append(f"{path}:  {field.description or ann.__doc__ or ''}".rstrip())
            lines.extend(describe_schema(ann, path + "."))
            continue
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        lines.append(f"{path} = {default}  # {field.description or ''}")
    return lines
