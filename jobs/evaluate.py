"""Ray job entrypoint: policy A vs policy B on held-out prompts (win rate, harmless rate, curves).

    python -m jobs.evaluate --config configs/eval-toy.yaml --set eval.policy_a=RUN_DIR/checkpoints/iter-000012/hf

Inside a Ray job RAY_ADDRESS is set and the evaluation joins that cluster; run by hand it
starts a private local Ray. Same flags as `rlaif-ray eval`.
"""

import sys

from rlaif_ray.job_env import check_job_python

if __name__ == "__main__":
    check_job_python()  # one line naming what this interpreter lacks, before any heavy import
    from rlaif_ray.cli import main

    sys.exit(main(["eval", *sys.argv[1:]]))
