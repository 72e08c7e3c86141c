"""Ray job entrypoint: AI preference labels for a dataset of response pairs.

    python -m jobs.label_preferences --config configs/label-toy.yaml [--set k=v ...]

Inside a Ray job RAY_ADDRESS is set and the labeler pool joins that cluster; run by hand it
starts a private local Ray. Same flags as `rlaif-ray label`; a re-run resumes by shard.
"""

import sys

from rlaif_ray.job_env import check_job_python

if __name__ == "__main__":
    check_job_python()  # one line naming what this interpreter lacks, before any heavy import
    from rlaif_ray.cli import main

    sys.exit(main(["label", *sys.argv[1:]]))
