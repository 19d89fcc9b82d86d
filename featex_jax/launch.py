"""What every training command line shares: the device and multi-host flags, and starting JAX.

Kept free of JAX imports: the CPU split must be in XLA_FLAGS before JAX is first imported.
"""

import os

from absl import flags

from featex_jax import compilation_cache  # imports no JAX


def define_flags():
  """--progress, the multi-host flags, --cpu_devices and --compilation_cache, on absl's global FLAGS."""
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags.DEFINE_bool("distributed", False, "Multi-host: let JAX find the coordinator (TPU pod, SLURM, MPI).")
  flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
  flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
  flags.DEFINE_integer("process_id", None, "Multi-host: index of this process.")
  flags.DEFINE_integer(
    "cpu_devices",
    4,
    "Split the CPU into N XLA devices (0: leave XLA_FLAGS alone). 2x faster than 1 device with "
    "XLA's own ops on an AMD CPU; about even with cpu_kernels=auto on an Intel one (BENCHMARKS.md). "
    "GPU/TPU runs are unaffected.",
  )
  flags.DEFINE_string("compilation_cache", None, compilation_cache.FLAG_HELP)


def start(values):
  """Split the CPU, switch on the persistent compilation cache and join the multi-host job as the
  flags say; call before importing JAX elsewhere."""
  split_cpu(values.cpu_devices)
  compilation_cache.enable(values.compilation_cache)  # imports JAX: after split_cpu
  from featex_jax import multihost

  multihost.initialize(values.coordinator_address, values.num_processes, values.process_id, values.distributed)


def split_cpu(n_devices):
  """Ask XLA for n CPU devices (only the CPU platform reads this flag); must precede `import jax`."""
  current = os.environ.get("XLA_FLAGS", "")
  if n_devices > 1 and "xla_force_host_platform_device_count" not in current:
    os.environ["XLA_FLAGS"] = f"{current} --xla_force_host_platform_device_count={n_devices}".strip()
