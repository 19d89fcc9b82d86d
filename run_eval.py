"""Evaluate trained runs: k-means scoring, official DCASE metrics, submission files, plots.

  python run_eval.py --workdir runs/demo
  python run_eval.py --workdir runs/a --workdir runs/b            # an ensemble of two runs
  python run_eval.py --workdir runs/dcase2023 --data_dir /data/eval_data \
      --ground_truth /data/dcase2023_task2_evaluator/ground_truth --out results/eval

Writes <out>/submission/*.csv (official format), <out>/results.json, <out>/results.txt,
<out>/plots/*.png (default out: <first workdir>/eval), and the centres and thresholds that
`python -m featex_jax.score` reuses.
"""

from absl import app
from absl import flags
from absl import logging

from featex_jax import compilation_cache
from featex_jax import errors
from featex_jax import host_memory

FLAGS = flags.FLAGS
flags.DEFINE_multi_string(
  "workdir", None, "Run folder(s); several (or one holding member_*) = an ensemble.", required=True
)
flags.DEFINE_multi_string("data_dir", None, "Data root(s); default: the runs' config.data.roots (sets it).")
flags.DEFINE_string(
  "ground_truth", None, "Folder with the official evaluator's ground_truth_* folders (sets config.data.ground_truth)."
)
flags.DEFINE_string("out", None, "Output folder; default <first workdir>/eval.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_string("compilation_cache", None, compilation_cache.FLAG_HELP)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO; --verbosity=0 shows it
  from featex_jax import evaluate
  from featex_jax import results

  compilation_cache.enable(FLAGS.compilation_cache)
  evaluation, out = evaluate.evaluate_runs(
    FLAGS.workdir, FLAGS.data_dir, FLAGS.ground_truth, FLAGS.out, progress=FLAGS.progress
  )
  print(results.format_table(evaluation))
  print(f"Outputs in {out}: submission/ (official CSVs), results.json, results.txt, plots/")


if __name__ == "__main__":
  errors.run_command(host_memory.run_with_allocator, app.run, main)
