"""Experiment configs: one `get_config()` per file, as in the Flax examples."""
