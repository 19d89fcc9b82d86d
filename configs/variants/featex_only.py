"""FeatEx only: the 3N-class FeatEx loss (no StatEx) replaces the classification loss."""

from configs.variants import dataset_config


def get_config(dataset=""):
  config = dataset_config(dataset)
  config.augment.statex = False
  config.loss.classification_weight = 0.0
  config.loss.statex_weight = 0.0
  config.loss.featex_weight = 1.0
  return config
