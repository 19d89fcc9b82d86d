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
import sys

import jax
import numpy as np

from featex_jax import compilation_cache
from featex_jax import evaluate
from featex_jax import files
from featex_jax import pipeline
from featex_jax import scoring
from featex_jax import train as train_lib
from featex_jax.data import audio as audio_io
from featex_jax.data import classes as classes_lib
from featex_jax.data import errors
from featex_jax.data import layout
from featex_jax.data import names

SPLIT_FOLDERS = set(layout.SPLIT_FOLDERS)


@dataclasses.dataclass(frozen=True)
class Recording:
  path: str
  file_name: str
  machine: str
  section: str


def recordings(paths, machine=None, section=None):
  """Every audio file named or found (recursively, sorted) below the given folders."""
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
    raise errors.DataError(f"no centres for {', '.join(unknown)}; this run knows {sorted(scoring_info['thresholds'])}"
                           " (give --machine/--section if the folder or file name misleads)")
  member_scores = []
  for member_dir in scoring_info["members"]:
    member = evaluate.load_member(member_dir, classes)
    centres = np.load(pathlib.Path(member_dir) / evaluate.CENTRES_FILE)
    embeddings = _embed(member, items, batch_size, progress)
    scores = np.empty(len(items))
    for key in set(keys):
      rows = [i for i, k in enumerate(keys) if k == key]
      scores[rows] = scoring.anomaly_scores(embeddings[rows], centres[key])
    member_scores.append(scores)
  scores = scoring.combine_scores(member_scores, scoring_info["ensemble_reduce"])
  thresholds = np.array([scoring_info["thresholds"][k] for k in keys])
  return scores, (scores > thresholds).astype(np.int64)


def _embed(member, items, batch_size, progress):
  import tqdm
  config = member.config
  waves = [audio_io.load_audio(r.path, config.data.sample_rate) for r in items]
  lengths = np.array([len(w) for w in waves])
  offsets = pipeline.clip_offsets([pipeline.clip_key(r) for r in items], lengths,
                                  config.data.clip_samples, config.seed)
  fn = evaluate.embedding_fn(member.network, config.data.clip_samples, train_lib.data_mesh(jax.devices()[:1]))
  out = np.empty((len(items), 2 * config.model.embedding_dim), np.float32)
  width = int(lengths.max())
  for start in tqdm.trange(0, len(items), batch_size, unit="batch", desc="scoring", disable=not progress):
    rows = range(start, min(start + batch_size, len(items)))
    audio = np.zeros((batch_size, width), np.float32)
    for row, i in enumerate(rows):
      audio[row, :lengths[i]] = waves[i]
    pad = batch_size - len(rows)
    batch_lengths = np.pad(lengths[start:start + len(rows)], (0, pad), constant_values=1)
    batch_offsets = np.pad(offsets[start:start + len(rows)], (0, pad))
    out[start:start + len(rows)] = np.asarray(fn(member.variables, audio, batch_lengths, batch_offsets))[:len(rows)]
  scoring.check_embeddings(out, [r.path for r in items])
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("paths", nargs="+", help="audio files or folders")
  parser.add_argument("--workdir", required=True, help="a run evaluated with run_eval.py")
  parser.add_argument("--machine", help="machine type of every file (default: from its folder)")
  parser.add_argument("--section", help="section of every file (default: from its name)")
  parser.add_argument("--out", help="also write file,machine,section,score,decision as CSV")
  parser.add_argument("--no-progress", action="store_true")
  parser.add_argument("--compilation_cache", help=compilation_cache.FLAG_HELP)
  args = parser.parse_args(argv)
  compilation_cache.enable(args.compilation_cache)
  try:
    items = recordings(args.paths, args.machine, args.section)
    scores, decisions = score_recordings(args.workdir, items, progress=not args.no_progress)
  except (errors.DataError, ValueError) as error:
    sys.exit(f"error: {error}")
  rows = [(r.path, r.machine, r.section, f"{s:.6f}", "anomaly" if d else "normal")
          for r, s, d in zip(items, scores, decisions)]
  width = max(len(r[0]) for r in rows)
  print(f"{'file':<{width}}  machine  section  score     decision")
  for path, machine, section, score, decision in rows:
    print(f"{path:<{width}}  {machine:<7}  {section:<7}  {score}  {decision}")
  if args.out:
    with files.atomic_open(args.out, "w", encoding="utf-8") as f:
      f.write("file,machine,section,score,decision\n")
      f.writelines(f"{p},{m},{sec},{s},{int(d == 'anomaly')}\n" for p, m, sec, s, d in rows)


if __name__ == "__main__":
  main()
