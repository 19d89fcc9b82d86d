"""Ablation: no temporal mean normalisation, StatEx over time and frequency (random per clip)."""

from configs.variants import dataset_config


def get_config(dataset=""):
  config = dataset_config(dataset)
  config.model.temporal_mean_normalisation = False
  config.augment.statex_mode = "full"
  return config
