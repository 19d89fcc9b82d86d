"""Regular classification loss + StatEx loss (3N classes), no FeatEx."""

from configs.variants import dataset_config


def get_config(dataset=""):
  config = dataset_config(dataset)
  config.augment.featex = False
  config.loss.classification_weight = 1.0
  config.loss.statex_weight = 1.0
  config.loss.featex_weight = 0.0
  return config
