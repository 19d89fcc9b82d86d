"""Baseline without SSL: mixup and the N-class sub-cluster AdaCos loss only."""

from configs.variants import dataset_config


def get_config(dataset=""):
  config = dataset_config(dataset)
  config.augment.statex = False
  config.augment.featex = False
  config.loss.statex_weight = 0.0
  config.loss.featex_weight = 0.0
  return config
