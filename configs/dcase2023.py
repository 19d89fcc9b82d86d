"""DCASE2023 Task 2: the published system (mixup + StatEx + FeatEx, sub-cluster AdaCos).

Every hyperparameter of the method lives here; other configs import this one and change a
few fields. Values follow the authors' Keras code (wilkinghoff/ssl4asd).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = "dcase2023"

  config.data = ml_collections.ConfigDict()
  # One or more roots holding machine folders (dev and eval sets together); any nesting.
  config.data.roots = ("data/dcase2023/dev_data", "data/dcase2023/eval_data")
  config.data.ground_truth = ""  # official evaluator's ground_truth_* folders, if any
  config.data.generate_synthetic = False  # True: generate missing roots from config.synthetic
  config.data.sample_rate = 16000
  config.data.clip_samples = 288000  # 18 s: clips are tiled and cut to this length
  config.data.random_offset_per_epoch = False  # reference: one fixed offset at load time
  config.data.skip_bad_clips = False  # True: skip bad clips (unreadable, NaN, silent...) with one warning
  # Classes: "reference" = the keys of the training clips of all roots AND of the development
  # test clips (normal and anomalous; their names carry domain and attributes), as the
  # reference's label encoder; "training" = the training clips' keys only (smaller N).
  config.data.class_table = "reference"
  config.data.cache_dir = ""  # decoded-audio cache; "" = <workdir>/../.featex_cache
  config.data.prefetch_batches = 2

  config.model = ml_collections.ConfigDict()
  config.model.frame_length = 1024
  config.model.hop_length = 512
  config.model.spectrum_bins = None  # None: the first half of |FFT| (144,000 bins of 288,000)
  config.model.embedding_dim = 128  # per branch; the embedding is 2x this
  config.model.se_ratio = 16
  config.model.temporal_mean_normalisation = True  # TMN: subtract each bin's temporal mean
  config.model.bn_epsilon = 1e-3  # Keras defaults
  config.model.bn_momentum = 0.99
  config.model.dtype = "float32"  # "bfloat16": network in bf16, params and loss in f32
  # Precision of the float32 dots and convolutions (featex_jax/precision.py). "float32": float32
  # on every backend (TPU: 6 bf16 passes; GPU: no TF32). "tensorfloat32": TF32 on Ampere+ GPUs,
  # 3 bf16 passes on TPU. "bfloat16": 1 bf16 pass on TPU (GPU: TF32 on Ampere+). "default": the
  # backend's choice (TPU: 1 bf16 pass; GPU: TF32 on Ampere+). CPUs compute float32 in every mode.
  config.model.matmul_precision = "float32"
  # Same function, speed only: "auto" runs the stem conv and the max-pools in the forms of
  # featex_jax/cpu_ops.py on the CPU backend (faster there, BENCHMARKS.md) and XLA's own
  # ops on GPU/TPU; "custom" / "xla" force one or the other everywhere.
  config.model.cpu_kernels = "auto"

  config.augment = ml_collections.ConfigDict()
  config.augment.mixup = True
  config.augment.mixup_prob = 0.5  # paper: always; authors' code: 0.5
  config.augment.statex = True
  config.augment.statex_prob = 0.5
  config.augment.statex_mode = "temporal"  # temporal | frequency | full (random per clip)
  config.augment.featex = True
  config.augment.featex_prob = 0.5

  config.loss = ml_collections.ConfigDict()
  config.loss.n_subclusters = 16
  config.loss.scale_update = "reference"  # reference (summed sub-cluster angles) | textbook
  config.loss.weight_decay = 1e-5  # L2 on conv/dense kernels, added to the loss
  config.loss.ssl_class_labels = True  # False: SSL heads see only the augmentation classes
  # Heads: classification (N classes, mixup labels), statex (3N), featex (3x its input).
  config.loss.classification_weight = 1.0
  config.loss.classification_trainable = False  # random, frozen centres (reference)
  config.loss.statex_weight = 0.0
  config.loss.statex_trainable = True
  config.loss.featex_weight = 1.0
  config.loss.featex_trainable = True

  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 1e-3
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-7  # Keras Adam default

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64  # global batch, split over all devices and hosts
  # False: as Keras' fit, the last partial batch of each epoch is a step (padded to the full
  # batch and masked), so every clip trains; True: it is dropped (a set smaller than one batch
  # then cannot train).
  config.train.drop_remainder = False
  config.train.epochs = 10
  config.train.checkpoint_every_steps = 0  # 0: only at the end of each epoch
  config.train.keep_checkpoints = 3
  config.train.log_every_steps = 1
  config.train.ensemble_size = 1

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 64
  config.eval.kmeans_clusters = 16
  config.eval.kmeans_n_init = 10
  config.eval.kmeans_seed = 0
  config.eval.threshold_percentile = 90.0
  config.eval.max_fpr = 0.1
  config.eval.ensemble_reduce = "mean"  # mean | sum of member scores
  return config
