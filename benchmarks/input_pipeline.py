"""Input pipeline throughput with no model: clips/s the audio cache delivers, and peak host RSS.

Runs what training runs before each step (featex_jax.input_pipeline): the epoch shuffle, the fixed
cut offsets, BatchReader's positioned reads of int16 clips from the decoded-audio cache with
prefetch, and (row 'device') `sharding.global_batch`, which places each batch on the devices.
The cache is built first in a separate process, so its decode time and peak RSS are reported
apart from the reading process's. Run it on two data sizes to see that the reading
process's RSS does not grow with the dataset (it holds `prefetch` batches, not the data).

  python benchmarks/input_pipeline.py --data /data/dcase2023/dev_data
  python benchmarks/input_pipeline.py --generate /tmp/synth100 --machines 14 --train-per-section 100
  python benchmarks/input_pipeline.py --generate /tmp/synth100 --cold     # page cache dropped for the file

--cold asks the kernel to drop the cache file from the page cache (posix_fadvise DONTNEED)
before each epoch, so reads come from the disk; otherwise they mostly come from RAM.
"""

import concurrent.futures
import multiprocessing
import os
import pathlib
import sys
import time

import harness

from featex_jax import host_memory


def parse_args(argv):
  p = harness.parser(__doc__)
  source = p.add_mutually_exclusive_group(required=True)
  source.add_argument("--data", nargs="+", help="data roots holding machine folders (training clips are read)")
  source.add_argument("--generate", metavar="DIR", help="synthetic DCASE-format set here (made when missing)")
  p.add_argument("--machines", type=int, default=14, help="--generate: machine types (DCASE2023: 14)")
  p.add_argument(
    "--train-per-section",
    type=int,
    default=100,
    help="--generate: source training clips per machine type (DCASE2023: 990 + 10 target)",
  )
  p.add_argument("--target-train-per-section", type=int, default=4, help="--generate: target training clips")
  p.add_argument("--seconds", type=float, default=10.0, help="--generate: clip length (DCASE2023: 10 s)")
  p.add_argument("--gen-workers", type=int, default=1, help="--generate: rendering processes")
  p.add_argument("--cache-dir", default=None, help="decoded-audio cache root (default: <data>/../.bench_cache)")
  p.add_argument("--batch", type=int, default=64, help="global batch")
  p.add_argument("--epochs", type=int, default=2, help="epochs read per mode (first one included in the figure)")
  p.add_argument("--prefetch", type=int, default=2, help="BatchReader prefetch (config.data.prefetch_batches)")
  p.add_argument("--workers", type=int, default=4, help="BatchReader reading threads")
  p.add_argument("--clip-samples", type=int, default=288000, help="model clip length, for the cut offsets")
  p.add_argument("--cold", action="store_true", help="drop the cache file from the page cache before each epoch")
  return p.parse_args(argv)


def build_cache(paths, cache_root):
  """In a child process: decode into the cache; (seconds, peak RSS MiB) of that process."""
  from featex_jax import input_pipeline

  start = time.perf_counter()
  input_pipeline.open_cache(paths, cache_root, sample_rate=16000, progress=False)
  return time.perf_counter() - start, harness.peak_rss_mib()


def training_set(args):
  """(training clips, roots): discovered under --data, or under a synthetic set made on first use."""
  from featex_jax.data import classes
  from featex_jax.data import layout

  roots = args.data
  if args.generate:
    out = pathlib.Path(args.generate)
    if not out.is_dir() or not any(out.iterdir()):
      from featex_jax import synthetic

      start = time.perf_counter()
      synthetic.generate(
        out,
        machines=args.machines,
        train_per_section=args.train_per_section,
        target_train_per_section=args.target_train_per_section,
        test_per_section=0,
        seconds=args.seconds,
        workers=args.gen_workers,
      )
      print(f"generated {out} in {time.perf_counter() - start:.0f} s")
    roots = [str(out)]
  return classes.training_clips(layout.discover(roots)), roots


def drop_from_page_cache(path):
  fd = os.open(path, os.O_RDONLY)
  try:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
  finally:
    os.close(fd)


def read_epochs(args, cache, labels, offsets, to_device, mesh):
  """(seconds, clips, bytes) to read --epochs epochs, each batch placed on the devices if asked."""
  import jax

  from featex_jax import input_pipeline
  from featex_jax import sharding

  reader = input_pipeline.BatchReader(cache, labels, prefetch=args.prefetch, workers=args.workers)
  clips = nbytes = 0
  start = time.perf_counter()
  try:
    for epoch in range(args.epochs):
      if args.cold:
        drop_from_page_cache(cache.directory / "samples.bin")
      index_batches = list(input_pipeline.train_index_batches(len(cache), args.batch, 0, epoch))
      for local in reader.batches(index_batches, [offsets[i] for i in index_batches]):
        if to_device:
          jax.block_until_ready(sharding.global_batch(local, mesh))
        clips += int(local["mask"].sum())  # real clips: padding rows are not read
        nbytes += int(local["lengths"].sum()) * cache.dtype.itemsize
  finally:
    reader.close()
  return time.perf_counter() - start, clips, nbytes


def main(argv=None):
  args = parse_args(argv)
  other_load = harness.OtherLoad()
  clips, roots = training_set(args)
  if not clips:
    sys.exit(f"no training clips under {roots}")
  cache_root = args.cache_dir or str(pathlib.Path(roots[0]).resolve().parent / ".bench_cache")
  paths = [c.path for c in clips]
  spawn = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
    build_s, build_rss = pool.submit(build_cache, paths, cache_root).result()

  import psutil

  from featex_jax import input_pipeline
  from featex_jax import sharding
  from featex_jax.data import classes

  info = harness.machine()
  cache = input_pipeline.open_cache(paths, cache_root, sample_rate=16000, progress=False)
  labels = [classes.ClassTable.from_clips(clips).class_index(c) for c in clips]
  offsets = input_pipeline.clip_offsets(
    [input_pipeline.clip_key(c) for c in clips], cache.lengths, args.clip_samples, 0
  )
  mesh = sharding.data_mesh()
  data_mib = os.path.getsize(cache.directory / "samples.bin") / 2**20
  rss_before = psutil.Process().memory_info().rss / 2**20
  print(
    f"{info['cpu']} ({info['cpu_cores']} cores), jax {info['jax']}, load {info['load_avg_1m']}: "
    f"{len(clips)} training clips, cache {data_mib:.0f} MiB {cache.dtype.name} at {cache.directory} "
    f"(built or checked in {build_s:.1f} s, peak RSS {build_rss:.0f} MiB)"
  )
  rows = []
  for to_device in (False, True):
    seconds, n_clips, nbytes = read_epochs(args, cache, labels, offsets, to_device, mesh)
    rows.append(
      {
        "mode": "device" if to_device else "host",
        "cold": args.cold,
        "epochs": args.epochs,
        "clips": n_clips,
        "seconds": round(seconds, 2),
        "clips_per_s": round(n_clips / seconds, 1),
        "mib_per_s": round(nbytes / seconds / 2**20, 1),
      }
    )
  peak = harness.peak_rss_mib()
  for row in rows:
    row.update(rss_before_mib=round(rss_before), peak_rss_mib=round(peak))
  harness.print_table(
    rows, ["mode", "cold", "epochs", "clips", "seconds", "clips_per_s", "mib_per_s", "rss_before_mib", "peak_rss_mib"]
  )
  other = other_load.cores()
  print(f"other processes kept {other} cores busy meanwhile")
  harness.append_record(
    args.json,
    {
      "benchmark": "input_pipeline",
      "command": " ".join(sys.argv),
      **info,
      "note": args.note,
      "other_cores_busy": other,
      "roots": roots,
      "training_clips": len(clips),
      "cache_mib": round(data_mib),
      "cache_dtype": cache.dtype.name,
      "cache_build_s": round(build_s, 1),
      "cache_build_peak_rss_mib": round(build_rss),
      "batch": args.batch,
      "prefetch": args.prefetch,
      "workers": args.workers,
      "rows": rows,
    },
  )


if __name__ == "__main__":
  host_memory.run_with_allocator(main)  # as the command lines run: featex_jax/host_memory.py
