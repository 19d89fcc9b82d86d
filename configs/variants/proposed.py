"""The proposed system: mixup, StatEx and FeatEx, classification + 9N FeatEx losses."""

from configs.variants import dataset_config


def get_config(dataset=""):
  return dataset_config(dataset)
