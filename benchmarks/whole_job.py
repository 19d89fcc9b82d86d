"""The whole job, end to end: run_train.py then run_eval.py, wall time and peak RSS of each.

Each command runs as its own process, as a user runs it; its peak resident set comes from
the kernel's accounting of that child (os.wait4), so training's and evaluation's peaks are
reported apart. Arguments after `--` go to run_train.py (config overrides, --data_dir).

  python benchmarks/whole_job.py --workdir /tmp/job                       # README's synthetic demo
  python benchmarks/whole_job.py --workdir /tmp/job -- --config.train.epochs=10
  python benchmarks/whole_job.py --dataset dcase2023 --workdir /tmp/job -- --data_dir /data/dev_data
"""

import os
import shutil
import subprocess
import sys
import time

import harness


def parse_args(argv):
  p = harness.parser(__doc__)
  p.add_argument("--dataset", default="synthetic", help="configs/<dataset>.py")
  p.add_argument("--workdir", required=True, help="run folder (emptied first: the job starts fresh)")
  p.add_argument("train_args", nargs="*", help="extra run_train.py arguments, after --")
  return p.parse_args(argv)


def run(command):
  """(wall seconds, peak RSS MiB) of one child process; a failure stops the benchmark."""
  print("$", " ".join(command), flush=True)
  start = time.perf_counter()
  child = subprocess.Popen(command, cwd=harness.REPO)
  _, status, usage = os.wait4(child.pid, 0)
  seconds = time.perf_counter() - start
  if os.waitstatus_to_exitcode(status):
    sys.exit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(command)}")
  return seconds, usage.ru_maxrss / 1024


def main(argv=None):
  args = parse_args(argv)
  other_load = harness.OtherLoad()
  shutil.rmtree(args.workdir, ignore_errors=True)
  train_cmd = [
    sys.executable,
    "run_train.py",
    f"--dataset={args.dataset}",
    f"--workdir={args.workdir}",
    "--noprogress",
    *args.train_args,
  ]
  data_dirs = [a for a in args.train_args if a.startswith("--data_dir")]
  eval_cmd = [sys.executable, "run_eval.py", f"--workdir={args.workdir}", "--noprogress", *data_dirs]
  rows = []
  for stage, command in (("train", train_cmd), ("evaluate", eval_cmd)):
    seconds, rss = run(command)
    rows.append({"stage": stage, "seconds": round(seconds, 1), "peak_rss_mib": round(rss)})
  rows.append(
    {
      "stage": "total",
      "seconds": round(sum(r["seconds"] for r in rows), 1),
      "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
    }
  )
  info = harness.machine()
  other = other_load.cores()
  print(f"{info['cpu']} ({info['cpu_cores']} cores), jax {info['jax']}; other processes kept {other} cores busy")
  harness.print_table(rows, ["stage", "seconds", "peak_rss_mib"])
  harness.append_record(
    args.json,
    {
      "benchmark": "whole_job",
      "command": " ".join(sys.argv),
      **info,
      "note": args.note,
      "other_cores_busy": other,
      "train_command": " ".join(train_cmd[1:]),
      "eval_command": " ".join(eval_cmd[1:]),
      "rows": rows,
    },
  )


if __name__ == "__main__":
  main()
