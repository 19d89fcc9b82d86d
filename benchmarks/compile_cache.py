"""Compile time of a first and a second run: JAX's persistent compilation cache across processes.

Runs the same child process three times: with the cache off, then twice on one fresh cache
folder (featex_jax.compilation_cache, as run_train.py, run_eval.py and featex_jax.score enable
it). Each child builds the training step exactly as run_train.py does (its default 4 CPU
devices, batch 64, configs/dcase2023.py) and the embedding program of run_eval.py, compiles
both (lower + compile) and reports the seconds and JAX's cache-hit events.

  python benchmarks/compile_cache.py
  python benchmarks/compile_cache.py --devices 1 --batch 16
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import harness

from featex_jax import host_memory


def parse_args(argv):
  p = harness.parser(__doc__)
  p.add_argument("--devices", type=int, default=4, help="CPU devices (run_train.py's --cpu_devices default: 4)")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--classes", type=int, default=42)
  p.add_argument("--child", metavar="CACHE", help=argparse.SUPPRESS)  # one run, in its own process
  return p.parse_args(argv)


def child(args):
  """One 'run': enable the cache, compile the train step and the embedding program."""
  harness.set_fake_devices(args.devices if args.devices > 1 else 0)
  import jax

  from featex_jax import compilation_cache
  from featex_jax import cpu_ops
  from featex_jax import embedding
  from featex_jax import model as model_lib
  from featex_jax import sharding
  from featex_jax import state as state_lib
  from featex_jax import train

  hits = []
  jax.monitoring.register_event_listener(lambda event, **_: hits.append(event))
  compilation_cache.enable(args.child)
  config = harness.reference_config("float32")
  mesh = sharding.data_mesh(jax.devices()[: args.devices])
  heads = state_lib.heads_for(config, args.classes)
  network = model_lib.create_model(config.model)
  state = sharding.replicate(state_lib.create_train_state(config, network, heads, jax.random.key(0)), mesh)
  host = harness.stored_batch(args.batch, 10 * config.data.sample_rate, config.data.clip_samples, args.classes)
  batch = sharding.global_batch(host, mesh)
  step = train.parallel_train_step(
    train.make_train_step(config, network, heads, args.classes),
    mesh,
    cpu_ops.compiler_options(config.model.cpu_kernels),
  )
  _, train_s = harness.compile_seconds(step, state, batch, train.step_key(0, 0))
  variables = sharding.replicate({"params": state.params["backbone"], "batch_stats": state.batch_stats}, mesh)
  embed = embedding.embedding_fn(network, config, mesh)
  _, embed_s = harness.compile_seconds(embed, variables, batch["audio"], batch["lengths"], batch["offsets"])
  print(
    json.dumps(
      {
        "train_step_compile_s": round(train_s, 1),
        "embedding_compile_s": round(embed_s, 1),
        "cache_hits": hits.count("/jax/compilation_cache/cache_hits"),
      }
    )
  )


def run_child(args, cache):
  command = [
    sys.executable,
    __file__,
    "--child",
    cache,
    "--devices",
    str(args.devices),
    "--batch",
    str(args.batch),
    "--classes",
    str(args.classes),
  ]
  start = time.perf_counter()
  result = subprocess.run(
    command, capture_output=True, text=True, check=True, env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  )
  row = json.loads(result.stdout.strip().splitlines()[-1])
  row["process_s"] = round(time.perf_counter() - start, 1)
  return row


def folder_mib(path):
  return round(sum(f.stat().st_size for f in os.scandir(path) if f.is_file()) / 2**20, 1)


def main(argv=None):
  args = parse_args(argv)
  if args.child:
    return child(args)
  other_load = harness.OtherLoad()
  info = harness.machine()
  rows = []
  with tempfile.TemporaryDirectory() as cache:
    for run, setting in (("cache off", "off"), ("first run", cache), ("second run", cache)):
      rows.append({"run": run, **run_child(args, setting)})
      rows[-1]["cache_files"] = len(os.listdir(cache))
      rows[-1]["cache_mib"] = folder_mib(cache)
      print(f"  done: {rows[-1]}", flush=True)
  harness.print_table(
    rows, ["run", "train_step_compile_s", "embedding_compile_s", "cache_hits", "process_s", "cache_files", "cache_mib"]
  )
  other = other_load.cores()
  print(f"other processes kept {other} cores busy meanwhile")
  harness.append_record(
    args.json,
    {
      "benchmark": "compile_cache",
      "command": " ".join(sys.argv),
      **info,
      "note": args.note,
      "other_cores_busy": other,
      "devices": args.devices,
      "batch": args.batch,
      "rows": rows,
    },
  )


if __name__ == "__main__":
  host_memory.run_with_allocator(main)  # as the command lines run: featex_jax/host_memory.py
