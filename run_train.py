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

import pathlib
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from featex_jax import configuration
from featex_jax import errors
from featex_jax import host_memory
from featex_jax import launch

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "dcase2023", "Use configs/<dataset>.py (dcase2023, dcase2022, synthetic).")
flags.DEFINE_string("variant", None, "Apply configs/variants/<variant>.py (baseline, statex_only, ...).")
flags.DEFINE_multi_string("data_dir", None, "Data root(s) holding machine folders (sets config.data.roots).")
flags.DEFINE_string("workdir", None, "Output folder; default runs/<dataset>[-<variant>].")
flags.DEFINE_integer(
  "ensemble",
  None,
  "Train K members (seeds seed..seed+K-1) into <workdir>/member_<k> (sets config.train.ensemble_size).",
)
launch.define_flags()
config_flags.DEFINE_config_file(
  "config", None, "Config file (set from --dataset/--variant when omitted).", lock_config=True
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO; --verbosity=0 shows it
  launch.start(FLAGS)
  from featex_jax import checkpoint  # after jax.distributed.initialize
  from featex_jax import train

  config = configuration.apply_command_line(FLAGS.config, data_dirs=FLAGS.data_dir, ensemble=FLAGS.ensemble)
  name = config.dataset + (f"-{FLAGS.variant}" if FLAGS.variant else "")
  workdir = pathlib.Path(FLAGS.workdir or f"runs/{name}")
  for member_dir, member_config in checkpoint.ensemble_members(config, workdir):
    logging.info("training %s", member_dir)
    train.train(member_config, member_dir, progress=FLAGS.progress)


if __name__ == "__main__":
  errors.run_command(
    host_memory.run_with_allocator, lambda: app.run(main, argv=configuration.default_config_argument(sys.argv))
  )
