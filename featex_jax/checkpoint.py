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
                     "data.skip_bad_clips", "eval.")


class CheckpointMismatchError(ValueError):
  """A checkpoint does not belong to the config or the data it is used with."""


def manager(workdir, keep=3, read_only=False):
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only,
                                         enable_async_checkpointing=False)
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
  return manager(workdir, read_only=True).latest_step()


def write_metadata(workdir, config, classes):
  """config.json and classes.json of a run (process 0 only; atomic)."""
  if jax.process_index() != 0:
    return
  files.write_json(pathlib.Path(workdir) / "config.json", configuration.to_dict(config))
  files.write_json(pathlib.Path(workdir) / "classes.json", classes.to_dict())


def read_metadata(workdir):
  """(config dict, classes dict) of a run; a clear error when the folder holds no run."""
  workdir = pathlib.Path(workdir)
  paths = [workdir / "config.json", workdir / "classes.json"]
  missing = [str(p) for p in paths if not p.is_file()]
  if missing:
    raise CheckpointMismatchError(f"{workdir} is not a featex-jax run: missing {', '.join(missing)}")
  return tuple(json.loads(p.read_text()) for p in paths)


def check_metadata(workdir, config, classes, allowed=RESUMABLE_CHANGES):
  """Raise CheckpointMismatchError naming what differs between the run in `workdir` and ours."""
  workdir = pathlib.Path(workdir)
  saved_config, saved_classes = read_metadata(workdir)
  changed = [name for name in configuration.differences(saved_config, configuration.to_dict(config))
             if not name.startswith(allowed)]
  problems = []
  if changed:
    details = "; ".join(f"{n}: checkpoint {_lookup(saved_config, n)!r} vs now {_lookup(configuration.to_dict(config), n)!r}"
                        for n in changed)
    problems.append(f"config differs from {workdir / 'config.json'} in {details}")
  try:
    classes.check_matches(classes_lib.ClassTable.from_dict(saved_classes), "the data",
                          str(workdir / "classes.json"))
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
