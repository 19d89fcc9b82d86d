"""Ablation: non-trainable (random, frozen) centres for the SSL heads."""

from configs.variants import dataset_config


def get_config(dataset=""):
  config = dataset_config(dataset)
  config.loss.statex_trainable = False
  config.loss.featex_trainable = False
  return config
