"""Built-in synthetic DCASE-format data: the README's main job, no download needed.

The data is generated into `data.roots[0]` when that folder is missing. Short training so a
2-core CPU finishes in minutes; the model and method are the real ones.
"""
from configs import dcase2023


def get_config():
  config = dcase2023.get_config()
  config.dataset = "synthetic"
  config.data.roots = (".cache/synthetic/dev_data",)
  config.data.ground_truth = ""
  config.synthetic = dict(machines=3, train_per_section=48, target_train_per_section=4,
                          test_per_section=16, seconds=4.0, seed=0)
  config.train.batch_size = 16
  config.train.epochs = 2
  config.eval.batch_size = 16
  config.eval.kmeans_clusters = 4
  return config
