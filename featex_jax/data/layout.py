"""Finding the clips of a DCASE Task 2 data set below one or more roots, whatever the nesting.

The official archives unpack to `dev_data/raw/<machine>/`, `<machine>/` directly, or an
evaluation archive beside a development one; DCASE2024/2025 add `supplemental/` folders and
DCASE2021 splits its test set into `source_test/` and `target_test/`. A machine folder is any
folder with a split folder holding audio; its name is the machine type.
"""

import collections
import dataclasses
import os

from featex_jax.data import ground_truth as ground_truth_lib
from featex_jax.data import names
from featex_jax.data.errors import DataError
from featex_jax.errors import listing

# Split folder -> split. Training uses 'train' and 'supplemental'.
SPLIT_FOLDERS = {
  "train": "train",
  "supplemental": "supplemental",
  "test": "test",
  "source_test": "test",
  "target_test": "test",
}
_SPLIT_ORDER = ("train", "supplemental", "test")


@dataclasses.dataclass(frozen=True)
class Clip:
  """One audio file and what it is. None where nothing says it (unlabelled evaluation clips)."""

  path: str  # absolute path
  file_name: str  # as in the submission CSVs
  machine: str  # machine type = name of the machine folder
  section: str  # '00'
  domain: str | None  # 'source' | 'target'
  split: str  # 'train' | 'supplemental' | 'test'
  label: str | None  # 'normal' | 'anomaly'
  attributes: str  # 'car_C2_spd_34V_mic_1', 'noAttribute' or ''
  root: str  # the root it was found under (as given), e.g. the dev or the eval set
  content: str | None = None  # supplemental clips: 'machine' or 'noise' as their name says

  @property
  def group(self):
    """The (machine, section) pair that scoring works on."""
    return (self.machine, self.section)


def is_audio(file_name):
  """A .wav or .flac name, not hidden (macOS leaves '._x.wav' metadata files beside copied clips)."""
  return os.path.splitext(file_name)[1].lower() in names.AUDIO_EXTENSIONS and not file_name.startswith(".")


def _audio_files(folder):
  return sorted(e.name for e in os.scandir(folder) if e.is_file() and is_audio(e.name))


def _split_folders(folder):
  """{split folder name: sorted audio file names} of the split folders of `folder` that hold audio."""
  found = {}
  for name in SPLIT_FOLDERS:
    path = os.path.join(folder, name)
    if os.path.isdir(path) and (files := _audio_files(path)):
      found[name] = files
  return found


def find_machine_folders(root):
  """Every machine folder below `root` (sorted); DataError when there is none."""
  if not os.path.isdir(root):
    raise DataError(f"{root}: data root is not a folder")
  folders = []
  for directory, subdirs, _ in os.walk(root):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    if _split_folders(directory):
      folders.append(directory)
      subdirs[:] = []  # a machine folder's split folders are not machine folders
  if not folders:
    raise DataError(f"{root}: no machine folders found (folders holding train/ or test/ with .wav or .flac files)")
  return sorted(folders, key=lambda d: (os.path.basename(d), d))


def _clip(path, root, machine, split):
  parsed = names.parse(path)
  if parsed.split is not None and parsed.split != split:
    raise DataError(f"{path}: a {parsed.split} file name in a {split} folder")
  if split == "supplemental":
    label = "normal"
  elif split == "train" and parsed.label != "normal":
    raise DataError(f"{path}: training files must be normal, the name says {parsed.label}")
  else:
    label = parsed.label
  return Clip(
    path=os.path.abspath(path),
    file_name=os.path.basename(path),
    machine=machine,
    section=parsed.section,
    domain=parsed.domain,
    split=split,
    label=label,
    attributes=parsed.attributes,
    root=str(root),
    content=parsed.content,
  )


def machine_clips(folder, root):
  """The clips of one machine folder: train/ first, then supplemental/, then test/; sorted by name."""
  machine = os.path.basename(os.path.normpath(folder))
  splits = _split_folders(folder)
  if "train" not in splits:
    raise DataError(f"{folder}: machine folder has no train/ folder with audio (found: {', '.join(splits)})")
  clips, problems = [], []
  for folder_name, files in splits.items():
    for file_name in files:
      try:
        clips.append(_clip(os.path.join(folder, folder_name, file_name), root, machine, SPLIT_FOLDERS[folder_name]))
      except DataError as e:
        problems.append(str(e))
  if problems:
    raise DataError(listing(f"{folder}: {len(problems)} file(s) cannot be used", problems))
  clips.sort(key=lambda c: (_SPLIT_ORDER.index(c.split), c.file_name))
  return clips


def discover(roots, ground_truth=None):
  """All clips below `roots` (a path or a list of paths), in root order, then machine, split, name.

  `ground_truth`: the folder holding the official evaluator's ground_truth_data/,
  ground_truth_domain/ and ground_truth_attributes/; it labels the evaluation test clips.
  """
  if isinstance(roots, (str, os.PathLike)):
    roots = [roots]
  if not roots:
    raise DataError("no data roots given")
  clips, problems = [], []
  for root in roots:
    for folder in find_machine_folders(root):
      try:
        clips.extend(machine_clips(folder, root))
      except DataError as e:  # every machine folder's problems in one error
        problems.append(str(e))
  if problems:
    raise DataError("\n".join(problems))
  _check_unique(clips)
  if ground_truth:
    clips = ground_truth_lib.apply(clips, ground_truth_lib.read(ground_truth))
  return clips


def _check_unique(clips):
  """The same file twice (overlapping roots) or two files that a submission CSV cannot tell apart."""
  by_file, by_name = collections.defaultdict(list), collections.defaultdict(list)
  for clip in clips:
    by_file[os.path.realpath(clip.path)].append(clip.path)
    by_name[(clip.machine, clip.section, clip.split, clip.file_name)].append(clip.path)
  twice = [" and ".join(p) for p in by_file.values() if len(p) > 1]
  twice += [" and ".join(p) for p in by_name.values() if len(set(map(os.path.realpath, p))) > 1]
  if twice:
    raise DataError(
      listing(
        f"{len(twice)} clip(s) found twice (overlapping roots, or one file name for the same "
        "machine, section and split in two roots)",
        twice,
      )
    )
