"""python -m emenet_tf.export: see emenet_tf/cli/export.py."""

from emenet_tf.cli.export import run_main

if __name__ == "__main__":
    run_main()
