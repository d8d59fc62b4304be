"""regbench: ablation studies of Dropout and BatchNorm in MLPs."""

__version__ = "0.1.0"
