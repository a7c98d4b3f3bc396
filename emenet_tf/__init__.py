"""EMENet-TF: multitask facial emotion recognition with iterative distillation for uncertainty."""

__version__ = "0.1.0"
