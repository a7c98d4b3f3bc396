"""Evaluate a training run against the baselines: see emenet_tf/cli/evaluate.py.

python evaluate.py --workdir runs/default [--ood_dir FOLDER] [--mc_passes 10] [--seed 0]
"""

from emenet_tf.cli.evaluate import run_main

if __name__ == "__main__":
    run_main()
