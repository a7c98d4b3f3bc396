"""EMENet-TF: multitask facial emotion recognition with iterative distillation for uncertainty."""

from edge import __version__  # one version for the training side and the edge runtime

__all__ = ["__version__"]
