"""Run folders: checkpoints (orbax), the run metadata that makes a checkpoint mean something,
and where the members of an ensemble live.

A work directory holds `checkpoints/<step>/` (orbax: written to a temporary folder and
renamed, so a killed job never leaves a half checkpoint), `config.json` (the resolved
config) and `classes.json` (the class table: which class index is which machine, section,
attribute string and domain). Resuming or evaluating checks both against what the caller
has and names every difference.
"""

import json
import pathlib

import jax
import orbax.checkpoint as ocp

from featex_jax import configuration
from featex_jax import files
from featex_jax.data import classes as classes_lib
from featex_jax.data import errors
from featex_jax.errors import FeatexError

# Fields that may change between a run and its resumption without changing what is trained.
RESUMABLE_CHANGES = (
  "train.epochs",
  "train.checkpoint_every_steps",
  "train.keep_checkpoints",
  "train.log_every_steps",
  "data.prefetch_batches",
  "data.cache_dir",
  "data.roots",
  "data.skip_bad_clips",
  "data.generate_synthetic",
  "data.ground_truth",
  "train.ensemble_size",
  "eval.",
  "model.cpu_kernels",
)


# Settings added after runs were first saved, and the value a run saved without them was
# trained with, so that older runs keep evaluating (and resume only when asked for that value).
ADDED_SETTINGS = {"data.class_table": "training", "model.matmul_precision": "default", "train.drop_remainder": True}


KERAS_FILE = "keras.json"  # a run converted from the reference's Keras weights: its N and unused weights


class CheckpointMismatchError(FeatexError, ValueError):
  """A checkpoint does not belong to the config or the data it is used with."""


def manager(workdir, keep=3, create=True):
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create, enable_async_checkpointing=False)
  return ocp.CheckpointManager(pathlib.Path(workdir).absolute() / "checkpoints", options=options)


def save(checkpoints, step, state):
  checkpoints.save(step, args=ocp.args.StandardSave(state))
  checkpoints.wait_until_finished()


def restore(checkpoints, target, step=None):
  """Restore into the structure, shapes, dtypes and shardings of `target`."""
  step = checkpoints.latest_step() if step is None else step
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  return checkpoints.restore(step, args=ocp.args.StandardRestore(abstract))


def latest_step(workdir):
  directory = pathlib.Path(workdir) / "checkpoints"
  if not directory.is_dir():
    return None
  return manager(workdir, create=False).latest_step()


def write_metadata(workdir, config, classes):
  """config.json and classes.json of a run (process 0 only; atomic). `classes` None: a
  converted Keras model whose class names are unknown (KERAS_FILE then holds its N)."""
  if jax.process_index() != 0:
    return
  files.write_json(pathlib.Path(workdir) / "config.json", configuration.to_dict(config))
  if classes is not None:
    files.write_json(pathlib.Path(workdir) / "classes.json", classes.to_dict())


def read_config(workdir):
  """The config dict a run was trained with (ADDED_SETTINGS filled in for older runs); a
  clear error when the folder holds no run."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.is_file():
    raise CheckpointMismatchError(f"{workdir} is not a featex-jax run: {path} is missing")
  config = json.loads(path.read_text())
  for name, value in ADDED_SETTINGS.items():
    section, field = name.split(".")
    config.setdefault(section, {}).setdefault(field, value)
  return config


def read_classes(workdir):
  """The run's class table, or None for a converted Keras model that holds no class names."""
  path = pathlib.Path(workdir) / "classes.json"
  return classes_lib.ClassTable.from_dict(json.loads(path.read_text())) if path.is_file() else None


def check_metadata(workdir, config, classes, allowed=RESUMABLE_CHANGES):
  """Raise CheckpointMismatchError naming what differs between the run in `workdir` and ours."""
  workdir = pathlib.Path(workdir)
  saved_config = read_config(workdir)
  changed = [
    name
    for name in configuration.differences(saved_config, configuration.to_dict(config))
    if not name.startswith(allowed)
  ]
  problems = []
  if changed:
    details = "; ".join(
      f"{n}: checkpoint {_lookup(saved_config, n)!r} vs now {_lookup(configuration.to_dict(config), n)!r}"
      for n in changed
    )
    problems.append(f"config differs from {workdir / 'config.json'} in {details}")
  try:
    saved_classes = read_classes(workdir)
    if saved_classes is not None:
      classes.check_matches(saved_classes, "the data", str(workdir / "classes.json"))
  except errors.DataError as error:
    problems.append(str(error))
  if problems:
    raise CheckpointMismatchError(" and ".join(problems) + ". Use another --workdir, or the same config and data.")


def _lookup(tree, dotted):
  for part in dotted.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return None
    tree = tree[part]
  return tree


def ensemble_members(config, workdir):
  """(work directory, config) of each model to train: member_<k> with seed + k when
  train.ensemble_size > 1, else the work directory itself."""
  size = config.train.ensemble_size
  if size <= 1:
    return [(pathlib.Path(workdir), config)]
  members = []
  for k in range(size):
    member = config.copy_and_resolve_references()
    member.seed = config.seed + k
    members.append((pathlib.Path(workdir) / f"member_{k}", member))
  return members


def member_dirs(workdirs):
  """Each work directory, or its member_<k> folders when it holds an ensemble."""
  members = []
  for workdir in map(pathlib.Path, workdirs):
    nested = sorted(workdir.glob("member_*"), key=lambda p: int(p.name.split("_")[-1]))
    members += nested or [workdir]
  return members
