"""Command-line configs: `--dataset NAME`, `--variant NAME`, `--config PATH`, `--config.x.y=v`.

The configs are Python files under configs/ (ml_collections, as in the Flax examples);
absl's config_flags parses the file and the `--config.field=value` overrides and rejects
unknown fields. `--dataset`/`--variant` are sugar that choose the config file.
"""

import json
import pathlib

import ml_collections

from featex_jax.errors import ConfigError

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"


def default_config_argument(argv):
  """Insert `--config=<file>` chosen by --dataset/--variant when argv names no config file.

  Overrides like `--config.train.epochs=3` stay as they are: absl applies them to that file.
  """
  if any(a == "--config" or a.startswith("--config=") for a in argv[1:]):
    return list(argv)
  dataset, variant = _flag_value(argv, "dataset") or "dcase2023", _flag_value(argv, "variant")
  if variant:
    path = CONFIG_DIR / "variants" / f"{variant}.py"
    spec = f"{path}:{dataset}"
  else:
    path = CONFIG_DIR / f"{dataset}.py"
    spec = str(path)
  if not path.is_file():
    kind = "variant" if variant else "dataset"
    choices = sorted(p.stem for p in path.parent.glob("*.py") if not p.stem.startswith("_"))
    raise ConfigError(f"unknown --{kind} {variant or dataset!r}: no {path}; choose one of {choices}")
  return [argv[0], f"--config={spec}", *argv[1:]]


def _flag_value(argv, name):
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def apply_command_line(config, data_dirs=None, ground_truth=None, ensemble=None):
  """A copy of `config` with the command-line flags that name config fields applied.

  The one place that decides flags vs config: --data_dir replaces data.roots (data the user
  brought is never generated over), --ground_truth sets data.ground_truth, --ensemble sets
  train.ensemble_size. Everything downstream reads the config only.
  """
  config = config.copy_and_resolve_references()
  if data_dirs:
    config.data.roots = tuple(str(d) for d in data_dirs)
    config.data.generate_synthetic = False
  if ground_truth:
    config.data.ground_truth = str(ground_truth)
  if ensemble:
    config.train.ensemble_size = int(ensemble)
  return config


def to_dict(config):
  """A JSON-able plain dict of the config (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def from_dict(values):
  return ml_collections.ConfigDict(values)


def differences(a, b, prefix=""):
  """Dotted names of the fields whose values differ between two plain config dicts."""
  names = []
  for key in sorted(set(a) | set(b)):
    name = f"{prefix}{key}"
    if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
      names += differences(a[key], b[key], name + ".")
    elif a.get(key) != b.get(key):
      names.append(name)
  return names
