"""The authors' Keras reference, timed on this machine and recorded beside our own figures.

CPU speed differs several-fold between machines, so every CPU target is a ratio against the
reference measured in the same session (docs/method.md, Speed). This runs the shared tool
`../shared/tools/keras-reference/bench_keras.py` (it builds the authors' model from their
unchanged code) in its own TensorFlow environment, and appends its figures to the results
file with the same machine record as train_step.py and forward.py.

  VENV=$(bash ../shared/tools/keras-reference/setup.sh | tail -n1)
  python benchmarks/keras_reference.py --venv $VENV && python benchmarks/train_step.py && python benchmarks/forward.py
"""

import json
import pathlib
import subprocess
import sys
import tempfile

import harness

TOOL = harness.REPO.parent / "shared" / "tools" / "keras-reference" / "bench_keras.py"


def parse_args(argv):
  p = harness.parser(__doc__)
  p.add_argument(
    "--venv",
    default=str(pathlib.Path.home() / ".cache" / "keras-reference-venv"),
    help="the reference's environment (setup.sh prints it)",
  )
  p.add_argument("--tool", default=str(TOOL), help="bench_keras.py")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
  p.add_argument("--classes", type=int, default=42)
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  other_load = harness.OtherLoad()
  python = pathlib.Path(args.venv) / "bin" / "python"
  if not python.is_file():
    sys.exit(f"{python} not found: run ../shared/tools/keras-reference/setup.sh first")
  info = harness.machine()
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "keras.json"
    command = [
      str(python),
      args.tool,
      "--batch",
      str(args.batch),
      "--steps",
      str(args.steps),
      "--classes",
      str(args.classes),
      "--json",
      str(out),
    ]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    result = json.loads(out.read_text())
  other = other_load.cores()
  print(f"other processes kept {other} cores busy meanwhile")
  harness.append_record(
    args.json,
    {
      "benchmark": "keras_reference",
      "command": " ".join(sys.argv),
      **info,
      "note": args.note,
      "other_cores_busy": other,
      "steps": args.steps,
      "rows": [result],
    },
  )


if __name__ == "__main__":
  main()
