"""`RunConfig`: one run's whole config, and the rules that cross sections."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from rlaif_ray.config.sections import DataSection, ModelSection, RayInit, RunSection, _Strict
from rlaif_ray.config.training import (ChaosSection, KLSection, LabelerSection, LearnerSection, PipelineSection,
                                       PPOSection, ReferenceSection, RewardSection, RolloutSection, SyncSection)
from rlaif_ray.config.verbs import (DPOSection, EvalSection, LabelSection, RejectionSamplingSection,
                                    RewardModelTrainSection)

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
    pipeline: PipelineSection = Field(default_factory=PipelineSection, description="Overlap of generation with scoring and training (staleness bound, chunks).")
    chaos: ChaosSection = Field(default_factory=ChaosSection, description="Fault injection for recovery tests (empty in real runs).")
    reward_model_train: RewardModelTrainSection = Field(default_factory=RewardModelTrainSection, description="Reward-model training (`rlaif-ray train-rm`); unused by PPO.")
    dpo: DPOSection = Field(default_factory=DPOSection, description="DPO from preference pairs (`rlaif-ray dpo`); unused by PPO.")
    eval: EvalSection | None = Field(None, description="Policy-vs-policy evaluation (`rlaif-ray eval`, which requires it); null in other runs.")
    rejection_sampling: RejectionSamplingSection = Field(default_factory=RejectionSamplingSection, description="Best-of-n rejection sampling (`rlaif-ray rejection-sampling`).")
    label: LabelSection = Field(default_factory=LabelSection, description="AI preference labeling of response pairs (`rlaif-ray label`); unused by PPO.")

    @model_validator(mode="before")
    @classmethod
    def _drop_default_eval(cls, raw: Any) -> Any:
        # Every run's config.yaml written before eval.prompts became required holds the whole
        # eval section at its defaults (policy_a and prompts null): it names nothing to
        # evaluate, and dropping it keeps those runs resumable. A section that names a
        # policy_a, or leaves prompts out, is validated (and fails naming eval.prompts).
        e = raw.get("eval") if isinstance(raw, dict) else None
        if isinstance(e, dict) and "prompts" in e and e["prompts"] is None and e.get("policy_a") is None:
            raw = {**raw, "eval": None}
        return raw

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
    def rollout_sequences_per_call(self) -> int:
        """The most sequences one rollout engine generates at once: its share of a batch's
        prompts (or one chunk of pipeline.chunk_prompts) × samples_per_prompt."""
        prompts = self.pipeline.chunk_prompts or -(-self.data.prompts_per_iteration // self.rollout.num_actors)
        return min(prompts, self.data.prompts_per_iteration) * self.rollout.sampling.samples_per_prompt

    @property
    def rollout_tokens_per_sequence(self) -> int:
        return self.data.max_prompt_tokens + self.rollout.sampling.max_new_tokens

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
    sizes = {"rollout": c.rollout.num_actors, "labeler": c.labeler.num_actors, "reference": c.reference.num_actors,
             "learner": c.learner.num_workers}
    for k, f in enumerate(c.chaos.faults):
        if f.actor >= sizes[f.role]:
            yield f"chaos.faults.{k}.actor: {f.role} has {sizes[f.role]} actor(s), no index {f.actor}"
        if f.iteration > c.run.iterations:
            yield f"chaos.faults.{k}.iteration: the run has only {c.run.iterations} iterations"
    if c.learner.backend == "nccl" and not c.uses_gpus:
        yield "learner.backend: nccl needs learner.resources.num_gpus > 0"
    if c.pipeline.max_staleness and c.ppo.off_policy_correction == "none" and not c.pipeline.allow_uncorrected:
        yield (f"pipeline.max_staleness: {c.pipeline.max_staleness} trains on samples of older policies; set "
               f"ppo.off_policy_correction to tis or decoupled (or pipeline.allow_uncorrected: true to train them as on-policy)")
