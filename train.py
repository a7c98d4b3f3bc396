"""Train EMENet (generation-0 ensemble, distilled students, evaluation, export): see emenet_tf/cli/train.py.

python train.py [--preset demo|paper] [--workdir runs/default] [any flag: python train.py --helpfull]
"""

from emenet_tf.cli.train import run_main

if __name__ == "__main__":
    run_main()
