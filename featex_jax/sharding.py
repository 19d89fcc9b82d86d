"""Devices: the 1-D data mesh and the two shardings everything uses (replicated, batch-split).

As in big_vision's sharding helpers, every other module asks here for where arrays live:
the train step, the embedding function of evaluation and scoring, and the checkpoint restore.
The mesh spans the devices of every host; each process contributes its share of a global
batch (`global_batch`), so the same program runs on one CPU, one GPU or a TPU pod.
"""

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def data_mesh(devices=None):
  """A 1-D mesh over `devices` (default: all devices of all hosts). Auto axis: XLA places the collectives."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def local_mesh():
  """One device of this process: for inference on a single host (scoring new recordings)."""
  return data_mesh(jax.local_devices()[:1])


def replicated(mesh):
  """Every device holds the whole array (parameters, optimiser state, scales)."""
  return NamedSharding(mesh, P())


def batch_split(mesh):
  """The leading (batch) axis split over the mesh's devices."""
  return NamedSharding(mesh, P(AXIS))


def replicate(tree, mesh):
  return jax.device_put(tree, replicated(mesh))


def global_batch(local_batch, mesh):
  """This process's share of a batch (numpy) -> one global array per field, split over devices."""
  sharding = batch_split(mesh)
  return {name: jax.make_array_from_process_local_data(sharding, value) for name, value in local_batch.items()}
