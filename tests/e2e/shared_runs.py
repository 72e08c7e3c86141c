"""Settings of the session's shared runs (tests/e2e/conftest.py), for the tests that compare with them."""

# Two learners (local.yaml ships one): a lost member takes down a group with a live peer.
CHECKPOINTED = ("data.prompts_per_iteration=4", "ppo.minibatch_size=16", "run.checkpoint_every=2", "learner.num_workers=2")
