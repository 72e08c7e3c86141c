# The two commands of the README. Each creates .venv on first use.
.PHONY: train test env models

env:
	@bash scripts/ensure-env.sh

models: env
	@.venv/bin/rlaif-ray make-tiny-models .cache/tiny-models

# The embedded default: a short CPU PPO run with tiny local models (configs/local.yaml).
train: models
	.venv/bin/rlaif-ray train --config configs/local.yaml --run-dir runs/local --overwrite

# The whole test suite (CPU only; builds the tiny models once, cached in .cache/).
test: env
	.venv/bin/python -m pytest tests -q --durations=60
