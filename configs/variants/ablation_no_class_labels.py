"""Ablation: the SSL losses see only which augmentation was applied, not the classes."""

from configs.variants import dataset_config


def get_config(dataset=""):
  config = dataset_config(dataset)
  config.loss.ssl_class_labels = False
  return config
