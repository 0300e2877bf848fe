"""CrossVideoMAE: self-supervised image-video representation learning."""

__version__ = "0.1.0"
