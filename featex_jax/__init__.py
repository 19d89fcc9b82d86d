"""featex-jax: self-supervised anomalous sound detection (Wilkinghoff, ICASSP 2024) in JAX/Flax."""

__version__ = "0.1.0"
