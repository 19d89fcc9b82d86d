"""The paper's tables in one command: train every (variant, seed), evaluate each run alone and
each variant's ensemble, write the tables (Markdown, CSV, JSON, plot).

  python run_sweep.py --dataset synthetic --variants baseline,proposed --seeds 2 --workdir runs/sweep-demo
  python run_sweep.py --dataset dcase2023 --table 1 --seeds 5 --workdir runs/table1 \
      --data_dir /data/dcase2023/dev_data --data_dir /data/dcase2023/eval_data \
      --ground_truth /data/dcase2023_task2_evaluator
  python run_sweep.py --dataset dcase2023 --table 2 --seeds 5 --workdir runs/table2 --config.train.epochs=3 ...

Runs go one after another on all local devices; rerunning the same command skips what is
done and resumes an interrupted training from its checkpoint. Multi-host: the same command on
every host with --distributed or --coordinator_address/--num_processes/--process_id trains
every run; the tables then come from the same command on one host (featex_jax/sweep.py).
"""

import pathlib
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from configs import variants as variants_lib
from featex_jax import configuration
from featex_jax import errors
from featex_jax import host_memory
from featex_jax import launch

FLAGS = flags.FLAGS
flags.DEFINE_string(
  "dataset", "dcase2023", "Apply the variants to configs/<dataset>.py (dcase2023, dcase2022, synthetic)."
)
flags.DEFINE_string("variants", "all", "'all' or comma-separated names from configs/variants/.")
flags.DEFINE_enum(
  "table", None, ["1", "2"], "The paper's Table 1 (SSL approaches) or 2 (ablations) variants; replaces --variants."
)
flags.DEFINE_integer("seeds", 5, "Runs per variant (seeds seed..seed+K-1), each evaluated alone; the paper uses 5.")
flags.DEFINE_string("workdir", None, "Sweep folder; default runs/sweep-<dataset>.")
flags.DEFINE_multi_string("data_dir", None, "Data root(s) holding machine folders (sets config.data.roots).")
flags.DEFINE_string(
  "ground_truth", None, "Folder with the official evaluator's ground_truth_* folders (sets config.data.ground_truth)."
)
launch.define_flags()
config_flags.DEFINE_config_file(
  "config", None, "Set from --dataset; --config.x=y overrides reach every run.", lock_config=True
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO; --verbosity=0 shows it
  try:
    variants = variants_lib.select(FLAGS.variants, FLAGS.table and int(FLAGS.table), FLAGS["variants"].present)
  except ValueError as error:
    raise errors.ConfigError(str(error)) from None
  launch.start(FLAGS)
  from featex_jax import sweep  # imports JAX: after launch.start

  workdir = pathlib.Path(FLAGS.workdir or f"runs/sweep-{FLAGS.dataset}")
  overrides = config_flags.get_override_values(FLAGS["config"])
  runs = sweep.plan(FLAGS.dataset, variants, FLAGS.seeds, workdir, overrides, FLAGS.data_dir, FLAGS.ground_truth)
  sweep.run(runs, f"table{FLAGS.table}" if FLAGS.table else "table", progress=FLAGS.progress)


def config_argument(argv):
  """argv with --config=configs/<dataset>.py; the sweep applies its variants to that file itself."""
  if any(a == "--config" or a.startswith("--config=") for a in argv[1:]):
    raise errors.ConfigError(
      "run_sweep.py takes no --config=<file>: choose the base config with --dataset "
      "(configs/<dataset>.py) and change fields with --config.x=y"
    )
  return configuration.default_config_argument(argv)


if __name__ == "__main__":
  errors.run_command(host_memory.run_with_allocator, lambda: app.run(main, argv=config_argument(sys.argv)))
