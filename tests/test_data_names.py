"""File names of every DCASE Task 2 year parse to what the file is; anything else is a clear error."""

import csv

import pytest

from featex_jax.data import names
from featex_jax.data.errors import DataError

# name -> (section, domain, split, label, index, attributes, content)
CASES = {
  # DCASE2023 development set, attribute values with dots and dashes
  "section_00_source_train_normal_0362_car_C2_spd_31V_mic_1.wav": (
    "00",
    "source",
    "train",
    "normal",
    "0362",
    "car_C2_spd_31V_mic_1",
    None,
  ),
  "section_00_target_test_anomaly_0040_volt_1.5_wt_130.wav": (
    "00",
    "target",
    "test",
    "anomaly",
    "0040",
    "volt_1.5_wt_130",
    None,
  ),
  "section_00_source_test_anomaly_0022_m-n_W.wav": ("00", "source", "test", "anomaly", "0022", "m-n_W", None),
  "section_00_source_test_normal_0027_vel_730_ac_0.11.wav": (
    "00",
    "source",
    "test",
    "normal",
    "0027",
    "vel_730_ac_0.11",
    None,
  ),
  # DCASE2022 sections 00-05; DCASE2024 machines without attributes
  "section_05_target_train_normal_0009_noAttribute.wav": (
    "05",
    "target",
    "train",
    "normal",
    "0009",
    "noAttribute",
    None,
  ),
  "section_00_source_train_normal_0000_.wav": ("00", "source", "train", "normal", "0000", "", None),
  # DCASE2021: no attributes; evaluation test names keep the domain
  "section_02_target_test_normal_0005.wav": ("02", "target", "test", "normal", "0005", "", None),
  "section_03_source_test_0199.wav": ("03", "source", "test", None, "0199", "", None),
  # DCASE2022-2025 evaluation test names
  "section_00_0000.wav": ("00", None, "test", None, "0000", "", None),
  # DCASE2025 supplemental clips
  "section_00_machine_source_0000_noAttribute.wav": ("00", "source", None, "normal", "0000", "noAttribute", "machine"),
  "section_00_noise_target_0012_noAttribute.flac": ("00", "target", None, "normal", "0012", "noAttribute", "noise"),
  # DCASE2020: the id is the section, a single domain
  "normal_id_00_00000000.wav": ("00", "source", None, "normal", "00000000", "", None),
  "anomaly_id_04_00000123.wav": ("04", "source", None, "anomaly", "00000123", "", None),
  "id_05_00000017.wav": ("05", "source", "test", None, "00000017", "", None),
  # extensions are case-insensitive, FLAC as WAV
  "section_01_source_train_normal_0001_pat_03.FLAC": ("01", "source", "train", "normal", "0001", "pat_03", None),
}


@pytest.mark.parametrize("file_name", sorted(CASES))
def test_parses_every_year(file_name):
  section, domain, split, label, index, attributes, content = CASES[file_name]
  assert names.parse(file_name) == names.ParsedName(section, domain, split, label, index, attributes, content)


def test_every_real_sample_name(dcase_sample):
  with open(dcase_sample / "manifest.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert rows
  for row in rows:
    parsed = names.parse(row["relative_path"].split("/")[-1])
    assert (parsed.section, parsed.domain, parsed.split, parsed.label, parsed.attributes) == (
      row["section"],
      row["domain"],
      row["split"],
      row["label"],
      row["attributes"],
    ), row["relative_path"]


@pytest.mark.parametrize(
  "file_name",
  [
    "recording.wav",
    "section_00_source_train_normal.wav",  # no index
    "section_00_source_train_broken_0000_a_1.wav",  # label neither normal nor anomaly
    "section_00_elsewhere_train_normal_0000_a_1.wav",  # unknown domain
    "section_xx_0000.wav",
    "section_00_source_train_normal_0000_a_1.mp3",  # not an audio extension we read
    "section_00_source_train_normal_0000_a_1",  # no extension
  ],
)
def test_unparseable_name_is_a_clear_error(file_name):
  with pytest.raises(DataError, match="^" + file_name.replace(".", r"\.")) as info:
    names.parse(file_name)
  assert isinstance(info.value, ValueError)
