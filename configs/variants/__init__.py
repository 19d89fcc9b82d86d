"""The paper's comparisons and ablations (ICASSP 2024, Tables 1 and 2) as configs.

Each file changes a few fields of a dataset config: `get_config("synthetic")` applies the
variant to configs/synthetic.py (default: dcase2023). On the command line:
`--dataset synthetic --variant baseline`, or `--config configs/variants/baseline.py:synthetic`.
"""
import importlib


def dataset_config(dataset):
  """The `get_config()` of configs/<dataset>.py (dcase2023 when empty)."""
  return importlib.import_module(f"configs.{dataset or 'dcase2023'}").get_config()
