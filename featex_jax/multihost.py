"""Multi-host start-up: one process per host (or per GPU), all running the same program."""

import os

import jax

from featex_jax.errors import ConfigError

# Environments where jax.distributed.initialize() finds the coordinator by itself.
_AUTO_DETECTED = ("TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "JAX_COORDINATOR_ADDRESS")


def initialize(coordinator_address=None, num_processes=None, process_id=None, auto=False):
  """Join the job when launched as several processes; a no-op for a single process.

  Explicit flags win; `auto=True` (or a known cluster environment with auto) lets JAX detect
  the coordinator on TPU pods, SLURM and Open MPI. Returns (process_index, process_count).
  """
  if coordinator_address or num_processes:
    if not (coordinator_address and num_processes and process_id is not None):
      raise ConfigError("multi-process runs need --coordinator_address, --num_processes and --process_id together")
    jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
  elif auto and any(name in os.environ for name in _AUTO_DETECTED):
    jax.distributed.initialize()
  elif auto:
    raise ConfigError(
      f"--distributed: no cluster environment found ({', '.join(_AUTO_DETECTED)}); "
      "give --coordinator_address, --num_processes and --process_id"
    )
  return jax.process_index(), jax.process_count()
