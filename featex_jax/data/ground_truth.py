"""The official evaluator's ground-truth CSVs (nttcslab/dcase2023_task2_evaluator layout).

<dir>/ground_truth_data/ground_truth_<machine>_section_<ss>_test.csv        file_name,0|1 (normal|anomaly)
<dir>/ground_truth_domain/ground_truth_<machine>_section_<ss>_test.csv      file_name,0|1 (source|target)
<dir>/ground_truth_attributes/ground_truth_<machine>_section_<ss>_test.csv  file_name,<development-style name>

No header. The attributes table maps each anonymous evaluation name (section_00_0000.wav) to
the name the clip would have in the development set, which also states label and domain.
"""

import collections
import csv
import dataclasses
import os
import re

from featex_jax import files
from featex_jax.data import names
from featex_jax.data.errors import DataError
from featex_jax.errors import listing

DATA, DOMAIN, ATTRIBUTES = "ground_truth_data", "ground_truth_domain", "ground_truth_attributes"
FOLDERS = (DATA, DOMAIN, ATTRIBUTES)
LABELS = ("normal", "anomaly")  # value 0, 1 in ground_truth_data
DOMAINS = ("source", "target")  # value 0, 1 in ground_truth_domain
_CSV_NAME = re.compile(r"ground_truth_(?P<machine>.+)_section_(?P<section>\d+)_test\.csv")


@dataclasses.dataclass(frozen=True)
class Truth:
  """What the ground truth says about one test file; None where no table says it."""

  label: str | None = None
  domain: str | None = None
  attributes: str | None = None
  original_name: str | None = None  # the development-style name (ground_truth_attributes), with .wav


def csv_name(machine, section):
  return f"ground_truth_{machine}_section_{section}_test.csv"


def _rows(path):
  with open(path, newline="", encoding="utf-8") as f:
    for line_number, row in enumerate(csv.reader(f), 1):
      if not any(cell.strip() for cell in row):
        continue
      if len(row) != 2 or not row[0].strip() or not row[1].strip():
        raise DataError(f"{path}:{line_number}: expected two columns 'file_name,value', got {','.join(row)!r}")
      yield line_number, row[0].strip(), row[1].strip()


def _read_table(path, folder):
  """{file_name: Truth} of one CSV."""
  table = {}
  for line_number, file_name, value in _rows(path):
    if file_name in table:
      raise DataError(f"{path}:{line_number}: {file_name} is listed twice")
    if folder == ATTRIBUTES:
      original = value if os.path.splitext(value)[1].lower() in names.AUDIO_EXTENSIONS else value + ".wav"
      try:
        parsed = names.parse(original)
      except DataError as e:
        raise DataError(f"{path}:{line_number}: {e}") from None
      table[file_name] = Truth(parsed.label, parsed.domain, parsed.attributes, original)
    else:
      if value not in ("0", "1"):
        raise DataError(f"{path}:{line_number}: value must be 0 or 1, got {value!r} for {file_name}")
      values = LABELS if folder == DATA else DOMAINS
      table[file_name] = Truth(label=values[int(value)]) if folder == DATA else Truth(domain=values[int(value)])
  return table


def _merge(a, b, where):
  merged = {}
  for field in ("label", "domain", "attributes", "original_name"):
    x, y = getattr(a, field), getattr(b, field)
    if x is not None and y is not None and x != y:
      raise DataError(f"{where}: the ground-truth tables disagree on the {field}: {x!r} and {y!r}")
    merged[field] = x if x is not None else y
  return Truth(**merged)


def read(directory):
  """{(machine, section): {file_name: Truth}} from a folder holding the ground_truth_* folders."""
  directory = os.fspath(directory)
  present = [f for f in FOLDERS if os.path.isdir(os.path.join(directory, f))]
  if not present:
    raise DataError(f"{directory}: no ground-truth folders found (expected {', '.join(FOLDERS)})")
  tables = collections.defaultdict(dict)  # key -> folder -> table
  for folder in present:
    for csv_file in sorted(os.listdir(os.path.join(directory, folder))):
      if not csv_file.endswith(".csv"):
        continue
      path = os.path.join(directory, folder, csv_file)
      match = _CSV_NAME.fullmatch(csv_file)
      if not match:
        raise DataError(f"{path}: expected a name like ground_truth_<machine>_section_<ss>_test.csv")
      tables[(match["machine"], match["section"])][folder] = (path, _read_table(path, folder))
  if not tables:
    raise DataError(f"{directory}: the ground-truth folders hold no ground_truth_*.csv files")
  truth = {}
  for key, by_folder in sorted(tables.items()):
    (first_path, first), *others = by_folder.values()
    merged = dict(first)
    for path, table in others:
      if set(table) != set(first):
        raise DataError(_mismatch(f"{path} and {first_path} list different files", set(table), set(first)))
      for file_name, value in table.items():
        merged[file_name] = _merge(merged[file_name], value, f"{file_name} in {path} and {first_path}")
    truth[key] = merged
  return truth


def _mismatch(headline, listed, found, listed_name="only in the first", found_name="only in the second"):
  return listing(
    headline,
    [f"{listed_name}: {n}" for n in sorted(listed - found)] + [f"{found_name}: {n}" for n in sorted(found - listed)],
  )


def apply(clips, truth):
  """The clips with label, domain and attributes of their test files filled in from `truth`.

  Tables for machine types that are not among the clips are ignored (the evaluator ships all
  machines of a year); for every machine that is present, each table must list exactly the
  test files found, and must agree with whatever their names already say.
  """
  machines = {c.machine for c in clips}
  test_files = collections.defaultdict(set)
  for clip in clips:
    if clip.split == "test":
      test_files[clip.group].add(clip.file_name)
  used = {key: table for key, table in truth.items() if key[0] in machines}
  if not used:
    raise DataError(
      f"the ground truth covers machine types {sorted({m for m, _ in truth})}, none of which "
      f"was found (found: {sorted(machines)})"
    )
  for (machine, section), table in used.items():
    found = test_files.get((machine, section), set())
    if set(table) != found:
      raise DataError(
        _mismatch(
          f"ground truth of {machine} section {section} does not match the test files found",
          set(table),
          found,
          "listed but not found",
          "found but not listed",
        )
      )
  return [
    _labelled(clip, used[clip.group][clip.file_name]) if clip.split == "test" and clip.group in used else clip
    for clip in clips
  ]


def _labelled(clip, truth):
  known = Truth(clip.label, clip.domain, clip.attributes or None)
  merged = _merge(known, truth, f"{clip.path} (its name and the ground truth)")
  return dataclasses.replace(clip, label=merged.label, domain=merged.domain, attributes=merged.attributes or "")


@dataclasses.dataclass(frozen=True)
class Row:
  """One evaluation test file: its anonymous name and what it is (for `write`)."""

  machine: str
  section: str
  file_name: str  # section_00_0000.wav
  original_name: str  # section_00_source_test_anomaly_0003_speed_1_load_1 (development-style, no extension)
  label: str
  domain: str


def write(directory, rows):
  """Writes the three tables for every (machine, section) of `rows`, sorted by file name."""
  by_key = collections.defaultdict(list)
  for row in rows:
    by_key[(row.machine, row.section)].append(row)
  for (machine, section), group in by_key.items():
    group.sort(key=lambda r: r.file_name)
    columns = {
      DATA: [str(LABELS.index(r.label)) for r in group],
      DOMAIN: [str(DOMAINS.index(r.domain)) for r in group],
      ATTRIBUTES: [r.original_name for r in group],
    }
    for folder, values in columns.items():
      text = "".join(f"{r.file_name},{v}\n" for r, v in zip(group, values))
      files.write_text(os.path.join(directory, folder, csv_name(machine, section)), text)
