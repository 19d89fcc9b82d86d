"""Configs as code: --dataset/--variant/--config choose the file, --config.x=y overrides, typos fail."""

import json
import pathlib
import subprocess
import sys

import pytest

from configs import dcase2023
from featex_jax import configuration
from featex_jax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_dataset_and_variant_choose_the_config_file():
  argv = configuration.default_config_argument(["run_train.py", "--dataset", "synthetic", "--variant=baseline"])
  assert argv[1] == f"--config={REPO / 'configs' / 'variants' / 'baseline.py'}:synthetic"
  argv = configuration.default_config_argument(["run_train.py", "--config.train.epochs=3"])
  assert argv[1] == f"--config={REPO / 'configs' / 'dcase2023.py'}" and argv[2] == "--config.train.epochs=3"
  explicit = ["run_train.py", "--config=configs/dcase2022.py", "--dataset=synthetic"]
  assert configuration.default_config_argument(explicit) == explicit
  with pytest.raises(ConfigError, match="unknown --dataset 'dcase1999'.*dcase2023"):
    configuration.default_config_argument(["run_train.py", "--dataset=dcase1999"])


def test_every_hyperparameter_of_the_method_is_in_the_config():
  config = dcase2023.get_config()
  assert (config.train.batch_size, config.train.epochs, config.optim.learning_rate, config.optim.eps) == (
    64,
    10,
    1e-3,
    1e-7,
  )
  assert (config.data.clip_samples, config.model.frame_length, config.model.hop_length) == (288000, 1024, 512)
  assert (config.model.bn_epsilon, config.model.bn_momentum, config.loss.n_subclusters) == (1e-3, 0.99, 16)
  assert (config.loss.classification_weight, config.loss.statex_weight, config.loss.featex_weight) == (1, 0, 1)
  assert (config.eval.kmeans_clusters, config.eval.kmeans_n_init, config.eval.threshold_percentile) == (16, 10, 90)


def test_differences_name_nested_fields():
  a = configuration.to_dict(dcase2023.get_config())
  b = configuration.to_dict(dcase2023.get_config())
  b["loss"]["weight_decay"] = 0.1
  b["data"]["roots"] = ["x"]
  assert configuration.differences(a, b) == ["data.roots", "loss.weight_decay"]
  assert json.loads(json.dumps(a)) == a


def run_train(*args):
  return subprocess.run(
    [sys.executable, str(REPO / "run_train.py"), *args], cwd=REPO, capture_output=True, text=True, timeout=120
  )


def test_unknown_override_is_an_error_before_anything_runs(tmp_path):
  result = run_train("--dataset=synthetic", f"--workdir={tmp_path}", "--config.train.epocs=3")
  assert result.returncode != 0
  assert "epocs" in result.stderr
  assert not any(tmp_path.iterdir())
