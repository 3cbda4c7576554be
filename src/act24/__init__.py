"""act24: reproduce and extend "Accelerating Transformer Inference and Training with 2:4 Activation
Sparsity" (Haziza et al., 2025)."""

__version__ = "0.1.0"
