"""The config types of the verbs that start the training roles (rollout, labeler, learners):
`TrainConfig` (`rlaif-ray train`) and `RejectionSamplingConfig` (`rlaif-ray
rejection-sampling`), on `RolesConfig`, what both hold; and the rules that cross sections."""

from __future__ import annotations

from pydantic import Field

from rlaif_ray.config.sections import DataSection, ModelSection, VerbConfig
from rlaif_ray.config.training import (ChaosSection, KLSection, LabelerSection, LearnerSection, PipelineSection,
                                       PPOSection, ReferenceSection, RewardSection, RolloutSection, SyncSection)
from rlaif_ray.config.verbs import RejectionSamplingSection


class RolesConfig(VerbConfig):
    """The sections the training roles read: models, prompts, rollout, labeler, reward, learners, sync."""

    model: ModelSection = Field(..., description="Policy and labeler models.")
    data: DataSection = Field(..., description="Prompt dataset and tokenization limits.")
    rollout: RolloutSection = Field(default_factory=RolloutSection, description="vLLM rollout actors and sampling.")
    labeler: LabelerSection = Field(default_factory=LabelerSection, description="AI labeler actors and prompts.")
    reward: RewardSection = Field(default_factory=RewardSection, description="Reward sources and objective.")
    learner: LearnerSection = Field(default_factory=LearnerSection, description="DeepSpeed learner workers and optimiser.")
    sync: SyncSection = Field(default_factory=SyncSection, description="Weight sync from learners to rollout engines.")

    # What the two verbs answer differently, read by the shared role code.
    @property
    def minibatch_size(self) -> int:
        """Rows per optimiser step, over all learners."""
        raise NotImplementedError

    @property
    def uses_critic(self) -> bool:
        return False

    @property
    def max_staleness(self) -> int:
        """Batches the rollout engines may generate ahead of the learners."""
        return 0

    @property
    def chunk_prompts(self) -> int | None:
        """Prompts per rollout chunk; None: one chunk per engine."""
        return None

    # Derived values live here, in one place.
    @property
    def samples_per_iteration(self) -> int:
        return self.data.prompts_per_iteration * self.rollout.sampling.samples_per_prompt

    @property
    def rollout_sequences_per_call(self) -> int:
        """The most sequences one rollout engine generates at once: its share of a batch's
        prompts (or one chunk of chunk_prompts) × samples_per_prompt."""
        prompts = self.chunk_prompts or -(-self.data.prompts_per_iteration // self.rollout.num_actors)
        return min(prompts, self.data.prompts_per_iteration) * self.rollout.sampling.samples_per_prompt

    @property
    def rollout_tokens_per_sequence(self) -> int:
        return self.data.max_prompt_tokens + self.rollout.sampling.max_new_tokens

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

    def cross_field_errors(self):
        labels = [s.label for s in self.reward.sources]
        if len(set(labels)) != len(labels):
            yield f"reward.sources: source names must be unique, got {labels}"
        if self.uses_labeler and (self.labeler.score_min, self.labeler.score_max) != (1, 10):
            yield (f"labeler.score_min/score_max: direct RLAIF rewards need the score range 1..10, "
                   f"got {self.labeler.score_min}..{self.labeler.score_max}")
        if self.sync.backend == "nccl" and not (self.uses_gpus and self.rollout.resources.num_gpus > 0):
            yield "sync.backend: nccl needs GPUs on the learner and rollout roles (resources.num_gpus > 0)"
        if self.learner.backend == "nccl" and not self.uses_gpus:
            yield "learner.backend: nccl needs learner.resources.num_gpus > 0"


class TrainConfig(RolesConfig):
    """`rlaif-ray train`: PPO (or GRPO, RLOO, REINFORCE++) with AI feedback."""

    reference: ReferenceSection = Field(default_factory=ReferenceSection, description="Reference-policy scorer.")
    ppo: PPOSection = Field(default_factory=PPOSection, description="Advantage estimator and PPO loss settings.")
    kl: KLSection = Field(default_factory=KLSection, description="KL penalty to the reference policy.")
    pipeline: PipelineSection = Field(default_factory=PipelineSection, description="Overlap of generation with scoring and training (staleness bound, chunks).")
    chaos: ChaosSection = Field(default_factory=ChaosSection, description="Fault injection for recovery tests (empty in real runs).")

    @property
    def minibatch_size(self) -> int:
        return self.ppo.minibatch_size

    @property
    def uses_critic(self) -> bool:
        return self.ppo.algorithm == "ppo"

    @property
    def max_staleness(self) -> int:
        return self.pipeline.max_staleness

    @property
    def chunk_prompts(self) -> int | None:
        return self.pipeline.chunk_prompts

    def cross_field_errors(self):
        yield from super().cross_field_errors()
        yield from _train_errors(self)


def _train_errors(c: TrainConfig):
    if not any(s.weight for s in c.reward.sources):
        yield "reward.sources: at least one source needs a non-zero weight"
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
    sizes = {"rollout": c.rollout.num_actors, "labeler": c.labeler.num_actors, "reference": c.reference.num_actors,
             "learner": c.learner.num_workers}
    for k, f in enumerate(c.chaos.faults):
        if f.actor >= sizes[f.role]:
            yield f"chaos.faults.{k}.actor: {f.role} has {sizes[f.role]} actor(s), no index {f.actor}"
        if f.iteration > c.run.iterations:
            yield f"chaos.faults.{k}.iteration: the run has only {c.run.iterations} iterations"
    if c.pipeline.max_staleness and c.ppo.off_policy_correction == "none" and not c.pipeline.allow_uncorrected:
        yield (f"pipeline.max_staleness: {c.pipeline.max_staleness} trains on samples of older policies; set "
               f"ppo.off_policy_correction to tis or decoupled (or pipeline.allow_uncorrected: true to train them as on-policy)")
    if c.ppo.old_logprobs == "rollout":
        if c.pipeline.max_staleness:
            yield (f"ppo.old_logprobs: rollout takes π_old from the engine that sampled, an older policy than the learner's "
                   f"when pipeline.max_staleness is {c.pipeline.max_staleness}; use learner, or max_staleness 0")
        if c.ppo.off_policy_correction != "none":
            yield (f"ppo.old_logprobs: rollout makes π_old the behaviour policy, so off_policy_correction "
                   f"{c.ppo.off_policy_correction} has nothing to correct; set it to none, or use learner")


class RejectionSamplingConfig(RolesConfig):
    """`rlaif-ray rejection-sampling`: best-of-n by the AI labeler's direct reward, then SFT on the winners.

    run.iterations rounds, each over data.prompts_per_iteration prompts with n =
    rollout.sampling.samples_per_prompt samples each. `function` reward sources are logged
    (all samples vs kept ones), never used to pick; source weights are not read.
    """

    rejection_sampling: RejectionSamplingSection = Field(default_factory=RejectionSamplingSection,
                                                         description="Best-of-n rejection sampling and its fine-tune.")

    @property
    def minibatch_size(self) -> int:
        return self.rejection_sampling.minibatch_size

    def cross_field_errors(self):
        yield from super().cross_field_errors()
        rs, n = self.rejection_sampling, self.rollout.sampling.samples_per_prompt
        if n < 2:
            yield f"rollout.sampling.samples_per_prompt: best-of-n needs n ≥ 2, got {n}"
        if self.data.prompts_per_iteration % rs.minibatch_size:
            yield (f"rejection_sampling.minibatch_size: {rs.minibatch_size} must divide data.prompts_per_iteration "
                   f"({self.data.prompts_per_iteration}): one kept sample per prompt")
        if rs.minibatch_size % self.learner.num_workers:
            yield (f"rejection_sampling.minibatch_size: {rs.minibatch_size} must be divisible by "
                   f"learner.num_workers ({self.learner.num_workers}) for data parallelism")
        kinds = [s.kind for s in self.reward.sources]
        if kinds.count("labeler_direct") != 1:
            yield ("reward.sources: rejection sampling keeps the best sample by the labeler's direct reward; "
                   f"give exactly one labeler_direct source (and function sources to log), got {kinds}")
        for k, kind in enumerate(kinds):
            if kind not in ("labeler_direct", "function"):
                yield f"reward.sources.{k}.kind: rejection sampling reads only labeler_direct and function sources, not {kind}"
