"""Built-in synthetic DCASE-format data: the README's main job, no download needed.

The data is generated into `data.roots` when that folder is missing (data.generate_synthetic). Sized so a 2-core CPU
trains and evaluates in about 5 minutes; the model and method are the real ones, with two
demo-sized changes: clips are cut to the synthetic recordings' own 4 s instead of tiled to
18 s, and BatchNorm's running statistics follow the batches faster (momentum 0.9 instead of
Keras' 0.99, whose averages need several hundred steps to forget their initial values: after
the ~70 steps here they would still be mostly mean 0 / variance 1, and inference-mode
embeddings would score below chance).
"""

from configs import dcase2023


def get_config():
  config = dcase2023.get_config()
  config.dataset = "synthetic"
  config.data.roots = (".cache/synthetic/dev_data",)
  config.data.ground_truth = ""
  config.data.generate_synthetic = True
  config.synthetic = dict(
    machines=3, train_per_section=48, target_train_per_section=4, test_per_section=16, seconds=4.0, seed=0
  )
  config.data.clip_samples = 64000  # = synthetic.seconds * 16 kHz
  config.model.bn_momentum = 0.9
  config.train.batch_size = 16
  config.train.epochs = 8
  config.eval.batch_size = 16
  config.eval.kmeans_clusters = 4
  return config
