"""Training classes (machine, section, attribute string, domain) and scoring groups (machine, section).

The order is the reference's: sklearn's LabelEncoder over the strings
'<machine>_<section>###<attributes>###<domain == source>', i.e. the sorted order of those
strings (so 'False' = target sorts before 'True' = source). Which clips' keys make the table
(`table_clips`): the reference fits its encoder on the training clips of every root AND the
development set's test clips, normal and anomalous ("reference"), so N counts attribute
values that only test clips have; "training" uses the training clips alone. A class table is
saved with every run so that the rows of a checkpoint's heads map back to names.
"""

import dataclasses

from featex_jax.data import names
from featex_jax.data.errors import DataError
from featex_jax.errors import ConfigError
from featex_jax.errors import listing

TRAINING_SPLITS = ("train", "supplemental")
CLASS_TABLES = ("reference", "training")
_FORMAT = "featex_jax.class_table/1"


@dataclasses.dataclass(frozen=True)
class ClassKey:
  machine: str
  section: str
  attributes: str
  domain: str

  @property
  def group(self):
    return (self.machine, self.section)

  @property
  def name(self):
    """The reference's label string; its sorted order is the class order."""
    return f"{self.machine}_{self.section}###{self.attributes}###{self.domain == 'source'}"


def class_key(clip):
  if clip.domain not in ("source", "target"):
    raise DataError(f"{clip.path}: no domain known, so it has no training class (an unlabelled evaluation clip?)")
  return ClassKey(clip.machine, clip.section, clip.attributes, clip.domain)


def training_clips(clips):
  return [c for c in clips if c.split in TRAINING_SPLITS]


def table_clips(clips, class_table="reference"):
  """The clips whose keys make the class table (see the module docstring).

  "reference" adds the test clips whose file names state their label: the development set's
  (section_00_source_test_anomaly_0001_<attributes>.wav). Evaluation-set test names
  (section_00_0000.wav) state nothing, so the reference never sees their keys; ground truth
  given at evaluation does not change the table either.
  """
  if class_table not in CLASS_TABLES:
    raise ConfigError(f"data.class_table must be one of {CLASS_TABLES}, got {class_table!r}")
  labelled_tests = [c for c in clips if c.split == "test" and names.parse(c.file_name).label is not None]
  return training_clips(clips) + (labelled_tests if class_table == "reference" else [])


def _group_name(group):
  return f"{group[0]}_{group[1]}"


@dataclasses.dataclass(frozen=True)
class ClassTable:
  """N training classes and the (machine, section) groups, both in the reference's order."""

  classes: tuple  # of ClassKey
  groups: tuple  # of (machine, section)

  def __post_init__(self):
    if list(self.classes) != sorted(set(self.classes), key=lambda k: k.name):
      raise DataError("class table: classes must be distinct and sorted by their reference name")
    if list(self.groups) != sorted({k.group for k in self.classes}, key=_group_name):
      raise DataError("class table: groups must be the sorted (machine, section) pairs of its classes")
    object.__setattr__(self, "_class_index", {k: i for i, k in enumerate(self.classes)})

  @classmethod
  def from_clips(cls, clips):
    """One class per distinct (machine, section, attributes, domain) of `clips` (`table_clips`)."""
    keys = {class_key(c) for c in clips}
    if not keys:
      raise DataError("no clips to build training classes from")
    return cls(tuple(sorted(keys, key=lambda k: k.name)), tuple(sorted({k.group for k in keys}, key=_group_name)))

  @property
  def n_classes(self):
    return len(self.classes)

  @property
  def n_groups(self):
    return len(self.groups)

  @property
  def class_names(self):
    return [k.name for k in self.classes]

  def class_index(self, clip):
    key = class_key(clip)
    if key not in self._class_index:
      raise DataError(f"{clip.path}: class {key.name!r} is not one of the {self.n_classes} training classes")
    return self._class_index[key]

  def to_dict(self):
    return {
      "format": _FORMAT,
      "classes": [dataclasses.asdict(k) for k in self.classes],
      "groups": [list(g) for g in self.groups],
    }

  @classmethod
  def from_dict(cls, data):
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
      raise DataError(f"not a class table (expected format {_FORMAT!r})")
    try:
      classes = tuple(ClassKey(**k) for k in data["classes"])
      groups = tuple((str(m), str(s)) for m, s in data["groups"])
    except (KeyError, TypeError, ValueError) as e:
      raise DataError(f"malformed class table: {e}") from None
    return cls(classes, groups)

  def check_matches(self, other, this_name="this data", other_name="the checkpoint"):
    """DataError naming every difference when `other` does not have the same classes in the same order."""
    if self.classes == other.classes:
      return
    mine, theirs = set(self.classes), set(other.classes)
    problems = [f"only in {this_name}: {k.name}" for k in self.classes if k not in theirs]
    problems += [f"only in {other_name}: {k.name}" for k in other.classes if k not in mine]
    raise DataError(
      listing(
        f"the training classes of {this_name} ({self.n_classes}) and {other_name} ({other.n_classes}) differ", problems
      )
    )
