"""python -m featex_jax.data ROOT [ROOT ...] [--ground-truth DIR] [--json]: what a data set holds."""
import argparse
import json
import sys

from featex_jax.data import layout
from featex_jax.data import summary as summary_lib
from featex_jax.data.errors import DataError


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m featex_jax.data",
      description="What a DCASE data set holds: clips, durations and sample rates per machine, section, split, "
                  "domain and label, and the number of training classes N.")
  parser.add_argument("roots", nargs="+", metavar="ROOT", help="folders holding machine folders (any nesting)")
  parser.add_argument("--ground-truth", metavar="DIR",
                      help="folder with the official evaluator's ground_truth_data/, _domain/, _attributes/")
  parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
  args = parser.parse_args(argv)
  try:
    summary = summary_lib.summarize(layout.discover(args.roots, ground_truth=args.ground_truth))
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(summary, indent=2) if args.json else summary_lib.format_table(summary))
  return 1 if summary["unreadable"] else 0


if __name__ == "__main__":
  sys.exit(main())
