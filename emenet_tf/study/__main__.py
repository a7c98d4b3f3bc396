"""python -m emenet_tf.study: see emenet_tf/cli/study.py."""

from emenet_tf.cli.study import run_main

if __name__ == "__main__":
    run_main()
