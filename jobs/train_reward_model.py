"""Ray job entrypoint: train a reward model on (AI) preference pairs (distilled RLAIF).

    python -m jobs.train_reward_model --config configs/train-rm-toy.yaml [--set k=v ...] [--overwrite]

Inside a Ray job RAY_ADDRESS is set and the workers join that cluster; run by hand it starts
a private local Ray. Same flags as `rlaif-ray train-rm`.
"""

import sys

from rlaif_ray.job_env import check_job_python

if __name__ == "__main__":
    check_job_python()  # one line naming what this interpreter lacks, before any heavy import
    from rlaif_ray.cli import main

    sys.exit(main(["train-rm", *sys.argv[1:]]))
