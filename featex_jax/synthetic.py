"""Synthetic DCASE-format data: the built-in data set of the README's main job and the end-to-end tests.

Each machine type is a harmonic stack at its own fundamental, with its own timbre and
amplitude wobble, over coloured noise. Attributes change the sound mildly (`speed` shifts the
fundamental by 3% a step, `load` tilts the harmonics and deepens the wobble); the target domain
runs at a speed the source never uses and adds a different background noise. Anomalies are
subtle: a faint inharmonic partial, sparse clicks, or a fast flutter, each at a random strength,
so a good detector scores well above chance without separating every clip.

Every clip is a function of (seed, machine type, section, domain, split, label, index) only,
so the output is the same whatever the counts asked for elsewhere, and clips are written one
at a time (bounded memory at any size). The output folder appears only when complete.
"""

import argparse
import concurrent.futures
import dataclasses
import inspect
import json
import multiprocessing
import os
import shutil
import tempfile

import numpy as np
import soundfile

from featex_jax import errors
from featex_jax.data import ground_truth

MACHINE_TYPES = (
  "hum",
  "whine",
  "buzz",
  "drone",
  "rattle",
  "whirr",
  "throb",
  "chirp",
  "growl",
  "purr",
  "clatter",
  "hiss",
  "thrum",
  "wobble",
)
SOURCE_ATTRIBUTES = tuple((speed, load) for speed in (1, 2, 3) for load in (1, 2))
TARGET_ATTRIBUTES = ((5, 1), (5, 2))
ANOMALIES = ("partial", "clicks", "flutter")
DOMAINS, SPLITS, LABELS = ("source", "target"), ("train", "test"), ("normal", "anomaly")
LAYOUTS = ("dev", "eval", "both")
_HARMONICS = 12
# Random streams are np.random.default_rng([seed, tag, ...]) with tag 1: a machine type's sound,
# 2: one clip, 3: the evaluation-set order of a section's test files, 4: an anomaly's kind.
_PEAK = 0.99


def machine_name(index):
  return MACHINE_TYPES[index] if index < len(MACHINE_TYPES) else f"machine{index:02d}"


@dataclasses.dataclass(frozen=True)
class MachineSound:
  """What makes one machine type sound like itself."""

  f0: float  # fundamental (Hz) at speed 2, section 0
  harmonic_amplitudes: tuple
  tilt: float  # extra harmonic roll-off per unit of load
  noise_cutoff: float  # Hz, corner of the low-pass noise colour
  noise_slope: float  # roll-off exponent above the corner
  noise_level: float  # noise RMS relative to the machine's RMS
  wobble_rate: float  # Hz, slow amplitude modulation
  wobble_depth: float
  background_cutoff: float  # Hz, colour of the target domain's background noise


def machine_sound(seed, index):
  rng = np.random.default_rng([seed, 1, index])
  # Fundamentals spread over four octaves (55-880 Hz) by the golden ratio: neighbours differ.
  position = (index * 0.6180339887 + rng.uniform(0, 0.05)) % 1.0
  harmonics = np.arange(1, _HARMONICS + 1)
  amplitudes = harmonics ** -rng.uniform(0.5, 1.3) * rng.uniform(0.3, 1.0, _HARMONICS)
  return MachineSound(
    f0=float(55.0 * 16.0**position),
    harmonic_amplitudes=tuple(amplitudes.tolist()),
    tilt=float(rng.uniform(0.15, 0.3)),
    noise_cutoff=float(rng.uniform(300, 3000)),
    noise_slope=float(rng.uniform(1.0, 2.5)),
    noise_level=float(rng.uniform(0.15, 0.4)),
    wobble_rate=float(rng.uniform(0.5, 6.0)),
    wobble_depth=float(rng.uniform(0.05, 0.2)),
    background_cutoff=float(rng.uniform(2000, 6000)),
  )


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """One clip to synthesise; also its development-set file name."""

  machine_index: int
  section: int
  domain: str
  split: str
  label: str
  index: int
  speed: int
  load: int

  @property
  def attributes(self):
    return f"speed_{self.speed}_load_{self.load}"

  @property
  def dev_name(self):
    return f"section_{self.section:02d}_{self.domain}_{self.split}_{self.label}_{self.index:04d}_{self.attributes}"

  def rng(self, seed):
    return np.random.default_rng(
      [
        seed,
        2,
        self.machine_index,
        self.section,
        DOMAINS.index(self.domain),
        SPLITS.index(self.split),
        LABELS.index(self.label),
        self.index,
      ]
    )


def _coloured_noise(rng, n, sample_rate, cutoff, slope):
  """Unit-RMS noise with a low-pass spectrum 1 / (1 + (f / cutoff)^2)^(slope / 2)."""
  spectrum = np.fft.rfft(rng.standard_normal(n))
  frequencies = np.fft.rfftfreq(n, 1.0 / sample_rate)
  noise = np.fft.irfft(spectrum / (1.0 + (frequencies / cutoff) ** 2) ** (slope / 2), n)
  return noise / np.sqrt(np.mean(noise**2))


def _anomaly(rng, kind, t, f0, n, sample_rate):
  """(additive part, multiplicative part) of a fault, relative to a unit-RMS machine sound."""
  if kind == "partial":  # a faint inharmonic partial, e.g. a damaged bearing's tone
    ratio = rng.integers(1, 5) + rng.uniform(0.25, 0.75)
    return rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * f0 * ratio * t + rng.uniform(0, 2 * np.pi)), 1.0
  if kind == "clicks":  # sparse short bursts, e.g. a loose part knocking
    clicks = np.zeros(n)
    count = max(1, int(rng.uniform(1.0, 4.0) * n / sample_rate))
    burst = np.exp(-np.arange(int(0.004 * sample_rate)) / (0.001 * sample_rate)) * rng.standard_normal(
      int(0.004 * sample_rate)
    )
    for start in rng.integers(0, n - len(burst), count):
      clicks[start : start + len(burst)] += burst
    return rng.uniform(1.0, 3.0) * clicks, 1.0
  # flutter: a fast amplitude modulation, e.g. an unbalanced rotor
  return 0.0, 1.0 + rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * rng.uniform(9, 20) * t)


def _harmonic_stack(phase, amplitudes, offsets):
  """sum_k a_k sin(k * phase + offset_k), with one complex exponential and a product per harmonic."""
  fundamental = np.exp(1j * phase)
  harmonic, stack = np.ones_like(fundamental), np.zeros(len(phase))
  for amplitude, offset in zip(amplitudes, offsets):
    harmonic *= fundamental
    if amplitude:
      stack += amplitude * (harmonic * np.exp(1j * offset)).imag
  return stack


def anomaly_kind(spec, seed):
  """The fault of an anomalous clip, drawn apart from its attributes so that neither predicts the other."""
  stream = [seed, 4, spec.machine_index, spec.section, DOMAINS.index(spec.domain), spec.index]
  return ANOMALIES[np.random.default_rng(stream).integers(len(ANOMALIES))]


def synthesize(spec, sound, seconds, sample_rate, seed):
  """float64 samples of one clip, peak below 1."""
  rng = spec.rng(seed)
  n = int(round(seconds * sample_rate))
  t = np.arange(n) / sample_rate
  f0 = sound.f0 * (1 + 0.12 * spec.section) * (1 + 0.03 * (spec.speed - 2)) * (1 + rng.normal(0, 0.003))
  # A slow drift of the speed, integrated into the phase of every harmonic.
  drift = 1 + 0.002 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
  phase = 2 * np.pi * np.cumsum(f0 * drift) / sample_rate
  harmonics = np.arange(1, _HARMONICS + 1)
  amplitudes = np.asarray(sound.harmonic_amplitudes) * harmonics ** (-sound.tilt * (spec.load - 1.5))
  amplitudes *= rng.uniform(0.9, 1.1, _HARMONICS) * (harmonics * f0 < 0.45 * sample_rate)
  offsets = rng.uniform(0, 2 * np.pi, _HARMONICS)
  machine = _harmonic_stack(phase, amplitudes, offsets)
  wobble = 1 + sound.wobble_depth * (0.7 + 0.6 * (spec.load - 1)) * np.sin(
    2 * np.pi * sound.wobble_rate * t + rng.uniform(0, 2 * np.pi)
  )
  machine *= wobble / np.sqrt(np.mean(machine**2))
  if spec.label == "anomaly":
    added, scaled = _anomaly(rng, anomaly_kind(spec, seed), t, f0, n, sample_rate)
    machine = machine * scaled + added
  signal = machine + sound.noise_level * _coloured_noise(rng, n, sample_rate, sound.noise_cutoff, sound.noise_slope)
  if spec.domain == "target":
    signal += 0.12 * _coloured_noise(rng, n, sample_rate, sound.background_cutoff, 2.0)
  signal *= 0.08 * 10 ** (rng.uniform(-3, 3) / 20)
  return np.clip(signal, -_PEAK, _PEAK)


def clip_specs(machine_index, sections, train_per_section, target_train_per_section, test_per_section):
  """Every clip of one machine type: training clips (source, then target), then test clips."""
  if test_per_section and test_per_section < 4:
    raise errors.ConfigError(
      f"test_per_section must be 0 or at least 4 (one per domain and label), got {test_per_section}"
    )
  specs = []
  for section in range(sections):
    for domain, count, attributes in (
      ("source", train_per_section, SOURCE_ATTRIBUTES),
      ("target", target_train_per_section, TARGET_ATTRIBUTES),
    ):
      specs += [
        ClipSpec(machine_index, section, domain, "train", "normal", i, *attributes[i % len(attributes)])
        for i in range(count)
      ]
    cells = [(domain, label) for domain in DOMAINS for label in LABELS]
    for cell, (domain, label) in enumerate(cells):
      attributes = SOURCE_ATTRIBUTES if domain == "source" else TARGET_ATTRIBUTES
      count = test_per_section // 4 + (cell < test_per_section % 4)
      specs += [
        ClipSpec(machine_index, section, domain, "test", label, i, *attributes[i % len(attributes)])
        for i in range(count)
      ]
  return specs


def _render(job):
  """Synthesises one clip and writes it as 16-bit PCM (a process-pool task)."""
  path, spec, sound, seconds, sample_rate, seed = job
  pcm = np.round(synthesize(spec, sound, seconds, sample_rate, seed) * 32768.0)
  soundfile.write(path, np.clip(pcm, -32768, 32767).astype(np.int16), sample_rate, subtype="PCM_16")


def _generate_root(root, machine_indices, counts, seconds, sample_rate, seed, evaluation, map_fn):
  """One data set root: machine folders, and for an evaluation set the ground-truth CSVs beside them."""
  truth, jobs = [], []
  for machine_index in machine_indices:
    machine, sound = machine_name(machine_index), machine_sound(seed, machine_index)
    specs = clip_specs(machine_index, **counts)
    for split in SPLITS:
      os.makedirs(os.path.join(root, machine, split), exist_ok=True)
    order = {}
    if evaluation:  # anonymous test names in a shuffled order, as the official evaluation sets
      for section in range(counts["sections"]):
        tests = [s for s in specs if s.split == "test" and s.section == section]
        permutation = np.random.default_rng([seed, 3, machine_index, section]).permutation(len(tests))
        order.update({spec: int(position) for spec, position in zip(tests, permutation)})
    for spec in specs:
      file_name = spec.dev_name + ".wav"
      if spec in order:
        file_name = f"section_{spec.section:02d}_{order[spec]:04d}.wav"
        truth.append(
          ground_truth.Row(machine, f"{spec.section:02d}", file_name, spec.dev_name, spec.label, spec.domain)
        )
      jobs.append((os.path.join(root, machine, spec.split, file_name), spec, sound, seconds, sample_rate, seed))
  for _ in map_fn(_render, jobs):
    pass
  if truth:
    ground_truth.write(root, truth)
  return {split: sum(job[1].split == split for job in jobs) for split in SPLITS}


def generate(
  out_dir,
  machines=3,
  sections=1,
  train_per_section=48,
  target_train_per_section=4,
  test_per_section=16,
  seconds=4.0,
  sample_rate=16000,
  seed=0,
  layout="dev",
  workers=1,
):
  """Writes a synthetic data set to `out_dir` (which must not exist or be empty); returns its summary.

  layout 'dev': `out_dir/<machine>/{train,test}/` with labelled test names. 'eval': the same
  machine types with anonymous test names (section_00_0000.wav) and the official evaluator's
  ground_truth_{data,domain,attributes}/ CSVs in `out_dir`. 'both': `out_dir/dev_data/` and
  `out_dir/eval_data/` (with its ground truth), the evaluation set holding the next `machines`
  machine types, as DCASE2023 does. `workers` > 1 renders clips in that many processes (the
  output is the same).
  """
  if layout not in LAYOUTS:
    raise errors.ConfigError(f"layout must be one of {LAYOUTS}, got {layout!r}")
  if machines < 1 or sections < 1 or train_per_section < 1 or target_train_per_section < 0 or seconds <= 0:
    raise errors.ConfigError(
      "need machines, sections, train_per_section >= 1, target_train_per_section >= 0, seconds > 0"
    )
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
    raise errors.ConfigError(f"{out_dir} exists and is not an empty folder; remove it or choose another")
  counts = dict(
    sections=sections,
    train_per_section=train_per_section,
    target_train_per_section=target_train_per_section,
    test_per_section=test_per_section,
  )
  dev_types, eval_types = range(machines), range(machines, 2 * machines)
  parts = {
    "dev": [("", dev_types, False)],
    "eval": [("", dev_types, True)],
    "both": [("dev_data", dev_types, False), ("eval_data", eval_types, True)],
  }[layout]
  os.makedirs(os.path.dirname(out_dir), exist_ok=True)
  staging = tempfile.mkdtemp(dir=os.path.dirname(out_dir), prefix=f".{os.path.basename(out_dir)}.")
  # 'spawn': forking a process that has started JAX's threads can deadlock the child.
  pool = (
    concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    if workers > 1
    else None
  )
  map_fn = (lambda fn, jobs: pool.map(fn, jobs, chunksize=8)) if pool else map
  try:
    totals = {"train": 0, "test": 0}
    for folder, types, evaluation in parts:
      part = _generate_root(
        os.path.join(staging, folder), types, counts, seconds, sample_rate, seed, evaluation, map_fn
      )
      totals = {k: totals[k] + part[k] for k in totals}
    if os.path.isdir(out_dir):
      os.rmdir(out_dir)
    os.replace(staging, out_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  finally:
    if pool:
      pool.shutdown(cancel_futures=True)
  roots = [os.path.join(out_dir, folder) if folder else out_dir for folder, _, _ in parts]
  evaluation_roots = [r for r, (_, _, evaluation) in zip(roots, parts) if evaluation]
  return {
    "out_dir": out_dir,
    "layout": layout,
    "roots": roots,
    "ground_truth": evaluation_roots[0] if evaluation_roots else None,
    "machines": [machine_name(i) for _, types, _ in parts for i in types],
    "sections": sections,
    "clips": totals,
    "seconds": seconds,
    "sample_rate": sample_rate,
    "seed": seed,
  }


def main(argv=None):
  parser = argparse.ArgumentParser(
    prog="python -m featex_jax.synthetic",
    description="Write a synthetic DCASE-format data set.",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  parser.add_argument("out", metavar="OUT", help="output folder (must not exist or be empty)")
  defaults = {p.name: p.default for p in inspect.signature(generate).parameters.values()}
  integers = {
    "machines": "machine types (per data set)",
    "sections": "sections per machine type",
    "train_per_section": "source-domain training clips per section",
    "target_train_per_section": "target-domain training clips per section",
    "test_per_section": "test clips per section, split evenly over domain x normal/anomaly",
    "sample_rate": "Hz",
    "seed": "random seed: the same seed gives the same bytes",
    "workers": "processes rendering clips",
  }
  for name, text in integers.items():
    parser.add_argument("--" + name.replace("_", "-"), type=int, default=defaults[name], metavar="N", help=text)
  parser.add_argument("--seconds", type=float, default=defaults["seconds"], help="clip length")
  parser.add_argument(
    "--layout",
    choices=LAYOUTS,
    default=defaults["layout"],
    help="dev: labelled test names; eval: anonymous names + ground truth; both: dev_data/ + eval_data/",
  )
  parser.add_argument("--json", action="store_true", help="print the summary as JSON")
  args = vars(parser.parse_args(argv))
  as_json, out = args.pop("json"), args.pop("out")
  summary = generate(out, **args)
  if as_json:
    print(json.dumps(summary, indent=2))
  else:
    print(
      f"wrote {summary['clips']['train']} training and {summary['clips']['test']} test clips of "
      f"{len(summary['machines'])} machine type(s) ({', '.join(summary['machines'])}) to {summary['out_dir']}"
    )
    if summary["ground_truth"]:
      print(f"ground truth: {summary['ground_truth']}")
  return 0


if __name__ == "__main__":
  errors.run_command(main)
