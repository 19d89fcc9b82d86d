"""DCASE Task 2 file names (2020-2025) -> what the file is.

The name is the only place where the development set states a clip's section, domain, split,
label and attributes; evaluation-set test names hide label (and, from 2022 on, domain and
attributes), which the official ground-truth CSVs then supply (see ground_truth.py).
"""

import dataclasses
import os
import re

from featex_jax.data.errors import DataError

AUDIO_EXTENSIONS = (".wav", ".flac")
NO_ATTRIBUTE = "noAttribute"

# section_00_source_train_normal_0000_<attributes>  (2022-2025; 2021 has no attributes)
_LABELLED = re.compile(
  r"section_(?P<section>\d+)_(?P<domain>source|target)_(?P<split>train|test)_"
  r"(?P<label>normal|anomaly)_(?P<index>\d+)(?:_(?P<attributes>.*))?"
)
# section_00_0000 (2022-2025 evaluation test), section_03_source_test_0000 (2021 evaluation test)
_UNLABELLED = re.compile(r"section_(?P<section>\d+)_(?:(?P<domain>source|target)_test_)?(?P<index>\d+)")
# section_00_machine_source_0000_<attributes> (2025 supplemental: clean machine or noise-only clips)
_SUPPLEMENTAL = re.compile(
  r"section_(?P<section>\d+)_(?P<content>[A-Za-z]+)_(?P<domain>source|target)_(?P<index>\d+)"
  r"(?:_(?P<attributes>.*))?"
)
# normal_id_00_00000000 (2020 development), id_05_00000000 (2020 evaluation test)
_DCASE2020 = re.compile(r"(?:(?P<label>normal|anomaly)_)?id_(?P<section>\d+)_(?P<index>\d+)")


@dataclasses.dataclass(frozen=True)
class ParsedName:
  """What a file name says. None where the name does not say it (evaluation test files)."""

  section: str
  domain: str | None
  split: str | None  # 'train' | 'test' | None (the folder decides)
  label: str | None  # 'normal' | 'anomaly' | None
  index: str
  attributes: str  # everything after the index, e.g. 'car_C2_spd_34V_mic_1', 'noAttribute', ''
  content: str | None = None  # supplemental clips only: 'machine', 'noise', ...


def stem(file_name):
  """The name without its audio extension; DataError for anything that is not .wav/.flac."""
  root, ext = os.path.splitext(file_name)
  if ext.lower() not in AUDIO_EXTENSIONS:
    raise DataError(f"{file_name}: not an audio file name (expected {' or '.join(AUDIO_EXTENSIONS)})")
  return root


def parse(file_name):
  """Parses any DCASE Task 2 file name into a ParsedName (a path is fine: errors name it as given).

  DCASE2020 names carry no domain: that challenge had a single domain, called 'source' here so
  that scoring treats it like every later year's source domain.
  """
  name = os.path.basename(stem(file_name))
  if match := _LABELLED.fullmatch(name):
    return ParsedName(
      match["section"], match["domain"], match["split"], match["label"], match["index"], match["attributes"] or ""
    )
  if match := _UNLABELLED.fullmatch(name):
    return ParsedName(match["section"], match["domain"], "test", None, match["index"], "")
  if match := _SUPPLEMENTAL.fullmatch(name):
    return ParsedName(
      match["section"],
      match["domain"],
      None,
      "normal",
      match["index"],
      match["attributes"] or "",
      content=match["content"],
    )
  if match := _DCASE2020.fullmatch(name):
    split = None if match["label"] else "test"
    return ParsedName(match["section"], "source", split, match["label"], match["index"], "")
  raise DataError(
    f"{file_name}: file name does not follow any DCASE Task 2 naming scheme (expected e.g. "
    "section_00_source_train_normal_0000_<attributes>.wav, section_00_0000.wav or normal_id_00_00000000.wav)"
  )
