"""python -m featex_jax.data ROOT [ROOT ...] [--ground-truth DIR] [--json] [--check]: what a data set holds."""

import argparse
import json

from featex_jax.data import audio
from featex_jax.data import layout
from featex_jax.data import summary as summary_lib
from featex_jax.errors import run_command


def main(argv=None):
  parser = argparse.ArgumentParser(
    prog="python -m featex_jax.data",
    description="What a DCASE data set holds: clips, durations and sample rates per machine, section, split, "
    "domain and label, and the number of training classes N. Without --check only file "
    "headers are read; exit status 1 when one is unreadable, 2 on an error.",
  )
  parser.add_argument("roots", nargs="+", metavar="ROOT", help="folders holding machine folders (any nesting)")
  parser.add_argument(
    "--ground-truth",
    metavar="DIR",
    help="folder with the official evaluator's ground_truth_data/, _domain/, _attributes/",
  )
  parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
  parser.add_argument(
    "--check",
    action="store_true",
    help="first decode every clip, as training does, and list every unreadable, empty, truncated, "
    "NaN/Inf or silent clip (exit status 2). Silent (all-zero) clips count as bad: training "
    "refuses them too, unless --config.data.skip_bad_clips=True skips every bad clip",
  )
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)
  clips = layout.discover(args.roots, ground_truth=args.ground_truth)
  if args.check:
    audio.validate_clips(clips, progress=not args.no_progress)
  summary = summary_lib.summarize(clips)
  print(json.dumps(summary, indent=2) if args.json else summary_lib.format_table(summary))
  return 1 if summary["unreadable"] else 0


if __name__ == "__main__":
  run_command(main)
