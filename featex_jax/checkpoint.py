"""Checkpoints (orbax) and the run metadata that makes a checkpoint mean something.

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

# Fields that may change between a run and its resumption without changing what is trained.
RESUMABLE_CHANGES = ("train.epochs", "train.checkpoint_every_steps", "train.keep_checkpoints",
                     "train.log_every_steps", "data.prefetch_batches", "data.cache_dir", "data.roots",
                     "data.skip_bad_clips", "eval.", "model.cpu_kernels")


class CheckpointMismatchError(ValueError):
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
  """config.json and classes.json of a run (process 0 only; atomic)."""
  if jax.process_index() != 0:
    return
  files.write_json(pathlib.Path(workdir) / "config.json", configuration.to_dict(config))
  files.write_json(pathlib.Path(workdir) / "classes.json", classes.to_dict())


def read_config(workdir):
  """The config dict a run was trained with; a clear error when the folder holds no run."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.is_file():
    raise CheckpointMismatchError(f"{workdir} is not a featex-jax run: {path} is missing")
  return json.loads(path.read_text())


def read_classes(workdir):
  """The run's class table, or None for a converted Keras model that holds no class names."""
  path = pathlib.Path(workdir) / "classes.json"
  return classes_lib.ClassTable.from_dict(json.loads(path.read_text())) if path.is_file() else None


def check_metadata(workdir, config, classes, allowed=RESUMABLE_CHANGES):
  """Raise CheckpointMismatchError naming what differs between the run in `workdir` and ours."""
  workdir = pathlib.Path(workdir)
  saved_config = read_config(workdir)
  changed = [name for name in configuration.differences(saved_config, configuration.to_dict(config))
             if not name.startswith(allowed)]
  problems = []
  if changed:
    details = "; ".join(f"{n}: checkpoint {_lookup(saved_config, n)!r} vs now {_lookup(configuration.to_dict(config), n)!r}"
                        for n in changed)
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
