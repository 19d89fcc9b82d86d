"""The paper's comparisons and ablations (ICASSP 2024, Tables 1 and 2) as configs.

Each file changes a few fields of a dataset config: `get_config("synthetic")` applies the
variant to configs/synthetic.py (default: dcase2023). On the command line:
`--dataset synthetic --variant baseline`, or `--config configs/variants/baseline.py:synthetic`.
"""

import importlib
import pathlib

# The variants each of the paper's tables compares, in the paper's column order, and the
# paper's name for each (the column headings of run_sweep.py's tables).
PAPER_TABLES = {
  1: ("baseline", "statex_only", "featex_only", "regular_statex", "regular_featex", "proposed"),
  2: ("ablation_no_class_labels", "ablation_frozen_ssl_centres", "ablation_no_tmn_full_statex"),
}
TITLES = {
  "baseline": "baseline",
  "statex_only": "StatEx only",
  "featex_only": "FeatEx only",
  "regular_statex": "regular + StatEx",
  "regular_featex": "regular + FeatEx",
  "proposed": "proposed",
  "ablation_no_class_labels": "SSL loss without class labels",
  "ablation_frozen_ssl_centres": "non-trainable class centres",
  "ablation_no_tmn_full_statex": "no TMN and full StatEx",
}


def dataset_config(dataset):
  """The `get_config()` of configs/<dataset>.py (dcase2023 when empty)."""
  return importlib.import_module(f"configs.{dataset or 'dcase2023'}").get_config()


def names():
  """Every variant defined in this folder, sorted."""
  return sorted(p.stem for p in pathlib.Path(__file__).parent.glob("*.py") if not p.stem.startswith("_"))


def variant_config(name, dataset=""):
  """The config of variant `name` applied to configs/<dataset>.py."""
  return importlib.import_module(f"configs.variants.{name}").get_config(dataset)


def select(spec="all", table=None, spec_given=True):
  """The variants a sweep runs: a paper table's, 'all' (both tables' first), or 'a,b' by name.

  ValueError, one line, for an unknown name or table, or for a table together with a list.
  """
  if table is not None:
    if table not in PAPER_TABLES:
      raise ValueError(f"no table {table}: the paper's tables are {sorted(PAPER_TABLES)}")
    if spec_given and spec != "all":
      raise ValueError(f"give either --table {table} or --variants {spec}, not both")
    return PAPER_TABLES[table]
  known = names()
  if spec == "all":
    in_tables = [v for t in PAPER_TABLES.values() for v in t]
    return tuple(in_tables + [v for v in known if v not in in_tables])
  chosen = [name.strip() for name in spec.split(",") if name.strip()]
  unknown = [name for name in chosen if name not in known]
  if unknown or not chosen:
    raise ValueError(f"unknown variant(s) {', '.join(unknown) or repr(spec)}: choose from {', '.join(known)} or all")
  if len(set(chosen)) != len(chosen):
    raise ValueError(f"--variants names a variant twice: {spec}")
  return tuple(chosen)
