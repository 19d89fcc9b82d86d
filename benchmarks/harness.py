"""What every benchmark script shares: device set-up, timing, XLA cost analysis, records.

Imported before JAX on purpose: `--fake-devices` only works when XLA_FLAGS is set before the
first `import jax`, so nothing here imports JAX at module level.
"""

import argparse
import datetime
import functools
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the scripts run from a checkout, installed or not
DEFAULT_RESULTS = REPO / "benchmarks" / "results.jsonl"


def parser(description):
  """An argparse parser with the options every benchmark takes."""
  p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--json", default=str(DEFAULT_RESULTS), help="append one JSON record per run to this file")
  p.add_argument("--note", default="", help="free text stored with the record (load, what else ran)")
  return p


def add_device_options(p):
  p.add_argument(
    "--fake-devices",
    type=int,
    default=0,
    metavar="N",
    help="split the CPU into N XLA devices (--xla_force_host_platform_device_count) for the "
    "scaling shape; the arithmetic still runs on the same cores",
  )
  p.add_argument(
    "--peak-gflops",
    default="matmul",
    help="peak for the 'of peak' column: a number in GFLOP/s, 'matmul' (measure a large "
    "matmul in each dtype on device 0 here) or 'none'",
  )


def add_sweep_options(p, unit):
  """The options of the step benchmarks: what to sweep and how long to time; `unit` names a timed call."""
  p.add_argument("--batch", type=int, nargs="+", default=[64], help="global batch sizes")
  p.add_argument(
    "--devices", type=int, nargs="+", default=None, help="device counts to run on (the first N devices); default: all"
  )
  p.add_argument(
    "--dtype",
    nargs="+",
    default=["float32"],
    choices=["float32", "bfloat16"],
    help="network computation dtype (config.model.dtype)",
  )
  p.add_argument(
    "--cpu-kernels",
    default="auto",
    choices=["auto", "xla", "custom"],
    help="config.model.cpu_kernels: featex_jax.cpu_ops (custom; auto = on the CPU) or XLA's own ops",
  )
  p.add_argument("--clip-samples", type=int, default=288000, help="model clip length (reference: 288,000 = 18 s)")
  p.add_argument(
    "--stored-seconds",
    type=float,
    default=10.0,
    help="length of the stored clips the device tiles and cuts (DCASE2023: 10 s)",
  )
  p.add_argument("--steps", type=int, default=5, help=f"timed {unit} calls (median reported)")
  p.add_argument("--warmup", type=int, default=1, help=f"untimed {unit} calls after compiling")


def set_fake_devices(n):
  """Must run before JAX is imported: XLA reads the flag once, at backend start."""
  if not n:
    return
  if "jax" in sys.modules:
    raise RuntimeError("--fake-devices must be applied before jax is imported")
  flag = "--xla_force_host_platform_device_count"
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(flag)]
  os.environ["XLA_FLAGS"] = " ".join(flags + [f"{flag}={n}"])
  os.environ.setdefault("JAX_PLATFORMS", "cpu")


def machine():
  """Where and when a figure was measured: CPU model, cores, load, JAX version, devices and the
  host allocator."""
  import jax

  from featex_jax import host_memory

  model = platform.processor() or "unknown"
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  device = jax.devices()[0]
  return {
    "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    "cpu": model,
    "cpu_cores": os.cpu_count(),
    "load_avg_1m": round(os.getloadavg()[0], 2),
    "jax": jax.__version__,
    "backend": jax.default_backend(),
    "device_kind": device.device_kind,
    "devices": jax.device_count(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "host_allocator": host_memory.in_effect(),
  }


class OtherLoad:
  """Cores kept busy by OTHER processes while a benchmark ran: system busy time (/proc/stat)
  minus the CPU time of this process and its finished children, over the wall time. On a
  shared machine this says whether a figure was measured on a quiet machine (about 0)."""

  def __init__(self):
    self.start = self._sample()

  @staticmethod
  def _sample():
    try:
      with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
      return None
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
    own = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return time.perf_counter(), busy, sum(u.ru_utime + u.ru_stime for u in own)

  def cores(self):
    end = self._sample()
    if self.start is None or end is None:
      return None
    (t0, busy0, own0), (t1, busy1, own1) = self.start, end
    return round(max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0), 2)


def timed(fn, steps, warmup):
  """Seconds of each of `steps` calls of fn() after `warmup` untimed ones; fn must block."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def compile_seconds(jitted, *args):
  """(compiled executable, lowering + XLA compile time): compile time kept apart from step time."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def cost(compiled):
  """XLA's own (flops, bytes accessed) of one call of one device's program, or (None, None)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # not every backend implements it
    return None, None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis:
    return None, None
  return analysis.get("flops"), analysis.get("bytes accessed")


@functools.cache  # measured once per dtype and process
def matmul_gflops(dtype, n=2048, steps=3):
  """Measured GFLOP/s of an n x n matmul in `dtype` on device 0: a practical peak for this machine."""
  import jax
  import jax.numpy as jnp

  x = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda a: a @ a)
  seconds = statistics.median(timed(lambda: f(x).block_until_ready(), steps, 1))
  return 2 * n**3 / seconds / 1e9


def peak_gflops(option, dtype):
  """GFLOP/s to divide by, from --peak-gflops; None when not wanted."""
  if option == "none":
    return None
  if option == "matmul":
    return matmul_gflops(dtype)
  return float(option)


def per_clip_cost(compiled, clips_per_device, clips_per_s, peak):
  """FLOPs and bytes per clip from XLA's cost analysis, and the fraction of `peak` reached."""
  flops, nbytes = cost(compiled)
  row = {
    "gflop_per_clip": None,
    "mb_per_clip": None,
    "gflops": None,
    "of_peak": None,
    "peak_gflops": None if peak is None else round(peak, 1),
  }
  if flops:
    row["gflop_per_clip"] = round(flops / clips_per_device / 1e9, 3)
    row["gflops"] = round(flops / clips_per_device * clips_per_s / 1e9, 1)
    if peak:
      row["of_peak"] = round(row["gflops"] / peak, 3)
  if nbytes:
    row["mb_per_clip"] = round(nbytes / clips_per_device / 1e6, 1)
  return row


def temp_mib(compiled):
  """XLA's temporary buffers of one call (activations kept for the backward pass), MiB; on CPU
  these live in host memory, so they bound the step's share of the process RSS."""
  try:
    return round(compiled.memory_analysis().temp_size_in_bytes / 2**20)
  except Exception:  # not every backend implements it
    return None


def peak_rss_mib():
  """Peak resident set of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(rows, columns):
  """A plain fixed-width table of the given columns."""
  cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
  widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
  print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
  for r in cells:
    print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


def _fmt(value):
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
  return str(value)


def append_record(path, record):
  """One JSON line per run, so several runs and machines accumulate in one file."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(record) + "\n")
  print(f"appended to {path}")


def stored_batch(batch, stored_samples, clip_samples, n_classes, seed=0):
  """A host batch as featex_jax.input_pipeline delivers it: int16 clips, lengths, cut offsets, labels,
  mask (all real clips)."""
  import numpy as np

  rng = np.random.default_rng(seed)
  tiled = -(-clip_samples // stored_samples) * stored_samples  # offsets range as the reference's cut
  return {
    "audio": (rng.standard_normal((batch, stored_samples)) * 1600).astype(np.int16),
    "lengths": np.full(batch, stored_samples, np.int32),
    "offsets": rng.integers(0, tiled - clip_samples + 1, batch).astype(np.int32),
    "labels": rng.integers(0, n_classes, batch).astype(np.int32),
    "mask": np.ones(batch, bool),
  }


def reference_config(dtype, clip_samples=None):
  """configs/dcase2023.py (batch 64, 288,000-sample clips) with the network dtype set."""
  from configs import dcase2023

  config = dcase2023.get_config()
  config.model.dtype = dtype
  if clip_samples:
    config.data.clip_samples = clip_samples
  return config


def timing_row(args, dtype, n_devices, batch, compiled, compile_s, times, unit):
  """One table row of a step benchmark: medians of `times` (seconds per call of `batch` clips),
  compile time, XLA's temporary memory and per-clip cost. `unit` names the time columns."""
  seconds = statistics.median(times)
  clips_per_s = batch / seconds
  row = {
    "dtype": dtype,
    "devices": n_devices,
    "batch": batch,
    "compile_s": round(compile_s, 1),
    f"{unit}_s": round(seconds, 3),
    f"{unit}_min_s": round(min(times), 3),
    f"{unit}_max_s": round(max(times), 3),
    "clips_per_s": round(clips_per_s, 2),
    "xla_temp_mib": temp_mib(compiled),
  }
  row.update(per_clip_cost(compiled, batch / n_devices, clips_per_s, peak_gflops(args.peak_gflops, dtype)))
  return row


def sweep(args, measure, benchmark, time_column, describe="", extra=None):
  """The shared main of the step benchmarks: `measure(args, dtype, n_devices, batch)` for every
  dtype x device count x batch, a table, and one JSON record with the machine and the load."""
  other_load = OtherLoad()
  set_fake_devices(args.fake_devices)
  import jax

  device_counts = args.devices or [jax.device_count()]
  if max(device_counts) > jax.device_count():
    sys.exit(f"--devices {max(device_counts)} but only {jax.device_count()} devices here (try --fake-devices)")
  info = machine()
  print(
    f"{info['cpu']} ({info['cpu_cores']} cores), {info['backend']} x{info['devices']}, jax {info['jax']}, "
    f"load {info['load_avg_1m']}, clip {args.clip_samples} samples{describe}"
  )
  rows = []
  for dtype in args.dtype:
    for n_devices in device_counts:
      for batch in args.batch:
        if batch % n_devices:
          print(f"skipping batch {batch} on {n_devices} devices: not divisible")
          continue
        rows.append(measure(args, dtype, n_devices, batch))
        print(f"  done: {rows[-1]}", flush=True)
  print(f"peak RSS of this process: {peak_rss_mib():.0f} MiB")
  print_table(
    rows,
    [
      "dtype",
      "devices",
      "batch",
      "compile_s",
      time_column,
      "clips_per_s",
      "gflop_per_clip",
      "mb_per_clip",
      "gflops",
      "of_peak",
      "xla_temp_mib",
    ],
  )
  other = other_load.cores()
  print(f"other processes kept {other} cores busy meanwhile")
  append_record(
    args.json,
    {
      "benchmark": benchmark,
      "command": " ".join(sys.argv),
      **info,
      "note": args.note,
      "other_cores_busy": other,
      "peak_rss_mib": round(peak_rss_mib()),
      "clip_samples": args.clip_samples,
      "stored_seconds": args.stored_seconds,
      **(extra or {}),
      "steps": args.steps,
      "warmup": args.warmup,
      "rows": rows,
    },
  )
