"""Graph neural network recommenders on MovieLens, driven by PyTorch Lightning."""

__version__ = "0.1.0"
