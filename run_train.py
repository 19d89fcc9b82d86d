"""Train the self-supervised ASD system: `python run_train.py --dataset dcase2023`.

  python run_train.py --dataset synthetic --workdir runs/demo
  python run_train.py --dataset dcase2023 --data_dir /data/dev_data --data_dir /data/eval_data \
      --workdir runs/dcase2023 --ensemble 5
  python run_train.py --dataset dcase2023 --variant baseline --config.train.epochs=3
  python run_train.py --config configs/dcase2022.py --config.augment.mixup_prob=1.0

Rerunning the same command in a work directory that holds a checkpoint resumes from it.
Multi-host: run the same command on every host with --distributed (TPU pods, SLURM, Open MPI)
or --coordinator_address/--num_processes/--process_id.
"""
import os
import pathlib
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from featex_jax import compilation_cache  # imports no JAX: split_cpu must come first
from featex_jax import configuration

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "dcase2023", "Use configs/<dataset>.py (dcase2023, dcase2022, synthetic).")
flags.DEFINE_string("variant", None, "Apply configs/variants/<variant>.py (baseline, statex_only, ...).")
flags.DEFINE_multi_string("data_dir", None, "Data root(s) holding machine folders; default: config.data.roots.")
flags.DEFINE_string("workdir", None, "Output folder; default runs/<dataset>[-<variant>].")
flags.DEFINE_integer("ensemble", None, "Train K members (seeds seed..seed+K-1) into <workdir>/member_<k>.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_bool("distributed", False, "Multi-host: let JAX find the coordinator (TPU pod, SLURM, MPI).")
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: index of this process.")
flags.DEFINE_integer("cpu_devices", 4, "Split the CPU into N XLA devices (0: leave XLA_FLAGS alone). XLA:CPU "
                     "trains about 2x faster on 4 devices than on 1 (BENCHMARKS.md); GPU/TPU runs are unaffected.")
flags.DEFINE_string("compilation_cache", None, compilation_cache.FLAG_HELP)
config_flags.DEFINE_config_file("config", None, "Config file (set from --dataset/--variant when omitted).",
                                lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO; --verbosity=0 shows it
  split_cpu(FLAGS.cpu_devices)
  from featex_jax import multihost  # imports JAX: after split_cpu
  compilation_cache.enable(FLAGS.compilation_cache)
  multihost.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, FLAGS.distributed)
  from featex_jax import train  # after jax.distributed.initialize
  config = FLAGS.config
  name = config.dataset + (f"-{FLAGS.variant}" if FLAGS.variant else "")
  workdir = pathlib.Path(FLAGS.workdir or f"runs/{name}")
  ensemble = FLAGS.ensemble or config.train.ensemble_size
  for member_dir, member_config in train.ensemble_members(config, workdir, ensemble):
    logging.info("training %s", member_dir)
    train.train(member_config, member_dir, data_dirs=FLAGS.data_dir, progress=FLAGS.progress)


def split_cpu(n_devices):
  """Ask XLA for n CPU devices (only the CPU platform reads this flag); must precede `import jax`."""
  current = os.environ.get("XLA_FLAGS", "")
  if n_devices > 1 and "xla_force_host_platform_device_count" not in current:
    os.environ["XLA_FLAGS"] = f"{current} --xla_force_host_platform_device_count={n_devices}".strip()


if __name__ == "__main__":
  app.run(main, argv=configuration.default_config_argument(sys.argv))
