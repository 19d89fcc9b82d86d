"""Score new recordings with a trained and evaluated run, without re-embedding its training set.

  python -m featex_jax.score --workdir runs/demo recordings/fan/test/ clip.wav [--out scores.csv]

Uses the k-means centres and decision thresholds that run_eval.py stored. Any sample rate,
length or channel count is accepted: clips are mixed down, resampled to the run's rate and
tiled/cut to its clip length with the same per-file offset run_eval.py uses, so a test clip
scored here gets the score it has in the submission files. The machine type comes from the
folder (`<machine>/test/x.wav` or `<machine>/x.wav`) or --machine, the section from the file
name or --section.
"""

import argparse
import dataclasses
import json
import pathlib

import numpy as np

from featex_jax import compilation_cache
from featex_jax import detector
from featex_jax import embedding
from featex_jax import evaluate
from featex_jax import files
from featex_jax import host_memory
from featex_jax import input_pipeline
from featex_jax.data import audio as audio_io
from featex_jax.data import classes as classes_lib
from featex_jax.data import errors
from featex_jax.data import layout
from featex_jax.data import names
from featex_jax.errors import run_command

SPLIT_FOLDERS = set(layout.SPLIT_FOLDERS)


@dataclasses.dataclass(frozen=True)
class Recording:
  path: str
  file_name: str
  machine: str
  section: str


def recordings(paths, machine=None, section=None):
  """Every file named, and every audio file found (recursively, sorted) below the given folders."""
  found = []
  for path in map(pathlib.Path, paths):
    if path.is_dir():
      found += sorted(p for p in path.rglob("*") if p.is_file() and layout.is_audio(p.name))
    elif path.is_file():
      found.append(path)
    else:
      raise errors.DataError(f"{path}: no such file or folder")
  if not found:
    raise errors.DataError(f"no audio files in {', '.join(map(str, paths))}")
  return [_recording(p, machine, section) for p in found]


def _recording(path, machine, section):
  folder = path.parent.parent if path.parent.name in SPLIT_FOLDERS else path.parent
  if section is None:
    try:
      section = names.parse(path.name).section
    except errors.DataError:
      raise errors.DataError(f"{path}: the file name does not say its section; give --section") from None
  return Recording(str(path), path.name, machine or folder.name, f"{int(section):02d}")


def score_recordings(workdir, items, batch_size=16, progress=True):
  """(scores, decisions) of each Recording, with the run's stored centres and thresholds."""
  workdir = pathlib.Path(workdir)
  stored = workdir / evaluate.SCORING_FILE
  if not stored.is_file():
    raise errors.DataError(f"{stored} is missing: run `python run_eval.py --workdir {workdir}` first")
  scoring_info = json.loads(stored.read_text())
  classes = classes_lib.ClassTable.from_dict(scoring_info["classes"])
  keys = [evaluate.group_key((r.machine, r.section)) for r in items]
  unknown = sorted({k for k in keys if k not in scoring_info["thresholds"]})
  if unknown:
    raise errors.DataError(
      f"no centres for {', '.join(unknown)}; this run knows {sorted(scoring_info['thresholds'])}"
      " (give --machine/--section if the folder or file name misleads)"
    )
  members = [embedding.load_member(member_dir, classes) for member_dir in scoring_info["members"]]
  waves = _decode(items, members[0].config.data.sample_rate)
  member_scores = []
  for member in members:
    centres = np.load(member.workdir / evaluate.CENTRES_FILE)
    embeddings = embedding.embed_waveforms(
      member, waves, [input_pipeline.clip_key(r) for r in items], [r.path for r in items], batch_size, progress
    )
    scores = np.empty(len(items))
    for key in set(keys):
      rows = [i for i, k in enumerate(keys) if k == key]
      scores[rows] = detector.anomaly_scores(embeddings[rows], centres[key])
    member_scores.append(scores)
  scores = detector.combine_scores(member_scores, scoring_info["ensemble_reduce"])
  thresholds = np.array([scoring_info["thresholds"][k] for k in keys])
  return scores, detector.decisions(scores, thresholds)


def _decode(items, sample_rate):
  """Every recording's samples, decoded once for all members; one DataError lists every bad file."""
  loaded = [audio_io.try_load_audio(r.path, sample_rate) for r in items]
  problems = [problem for _, problem in loaded if problem]
  if problems:
    raise errors.DataError(
      errors.listing(f"{len(problems)} of {len(items)} recordings cannot be scored", problems, limit=len(problems))
    )
  return [wave for wave, _ in loaded]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("paths", nargs="+", help="audio files or folders")
  parser.add_argument("--workdir", required=True, help="a run evaluated with run_eval.py")
  parser.add_argument("--machine", help="machine type of every file (default: from its folder)")
  parser.add_argument("--section", type=int, help="section of every file (default: from its name)")
  parser.add_argument("--out", help="also write file,machine,section,score,decision as CSV")
  parser.add_argument("--no-progress", action="store_true")
  parser.add_argument("--compilation_cache", help=compilation_cache.FLAG_HELP)
  args = parser.parse_args(argv)
  compilation_cache.enable(args.compilation_cache)
  items = recordings(args.paths, args.machine, args.section)
  scores, decisions = score_recordings(args.workdir, items, progress=not args.no_progress)
  rows = [
    (r.path, r.machine, r.section, f"{s:.6f}", "anomaly" if d else "normal")
    for r, s, d in zip(items, scores, decisions)
  ]
  width = max(len(r[0]) for r in rows)
  print(f"{'file':<{width}}  machine  section  score     decision")
  for path, machine, section, score, decision in rows:
    print(f"{path:<{width}}  {machine:<7}  {section:<7}  {score}  {decision}")
  if args.out:
    with files.atomic_open(args.out, "w", encoding="utf-8") as f:
      f.write("file,machine,section,score,decision\n")
      f.writelines(f"{p},{m},{sec},{s},{int(d == 'anomaly')}\n" for p, m, sec, s, d in rows)
  return 0


if __name__ == "__main__":
  run_command(host_memory.run_with_allocator, main)
