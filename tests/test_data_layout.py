"""Discovery finds every clip below any nesting of machine folders, with what its name and folder say."""

import csv
import os

import pytest
from audio_files import make_tree
from audio_files import write_audio

from featex_jax.data import layout
from featex_jax.data.errors import DataError


def manifest(dcase_sample):
  with open(dcase_sample / "manifest.csv", newline="") as f:
    return list(csv.DictReader(f))


def test_finds_every_manifest_file(dcase_sample):
  root = dcase_sample
  clips = layout.discover(root)
  found = {
    (os.path.relpath(c.path, root), c.machine, c.section, c.domain, c.split, c.label, c.attributes) for c in clips
  }
  expected = {
    (r["relative_path"], r["machine"], r["section"], r["domain"], r["split"], r["label"], r["attributes"])
    for r in manifest(dcase_sample)
  }
  assert found == expected
  assert len(clips) == len(expected)
  assert all(os.path.isabs(c.path) and c.file_name == os.path.basename(c.path) and c.root == str(root) for c in clips)
  assert {c.group for c in clips} == {(r["machine"], r["section"]) for r in manifest(dcase_sample)}


def test_order_is_machine_then_split_then_name(dcase_sample):
  clips = layout.discover([str(dcase_sample)])
  keys = [(c.machine, ("train", "supplemental", "test").index(c.split), c.file_name) for c in clips]
  assert keys == sorted(keys)


def test_any_nesting_several_roots_and_every_split_folder(tmp_path):
  dev, extra = tmp_path / "dev", tmp_path / "more"
  make_tree(
    dev,
    [
      "dev_data/raw/fan/train/section_00_source_train_normal_0000_m-n_W.wav",
      "dev_data/raw/fan/train/section_00_target_train_normal_0000_m-n_X.flac",
      "dev_data/raw/fan/test/section_00_source_test_anomaly_0000_m-n_W.wav",
      "dev_data/raw/fan/supplemental/section_00_machine_source_0000_noAttribute.wav",
      "valve/train/section_00_source_train_normal_0001_pat_01.wav",
    ],
  )
  make_tree(
    extra,
    [
      "eval_data/pump/train/section_03_source_train_normal_0000.wav",  # DCASE2021
      "eval_data/pump/source_test/section_03_source_test_0000.wav",
      "eval_data/pump/target_test/section_03_target_test_normal_0000.wav",
      "ToyCar/train/normal_id_01_00000000.wav",  # DCASE2020
      "ToyCar/test/id_01_00000000.wav",
    ],
  )
  # Files that are not clips are left alone: the DCASE2024 attribute tables, notes, hidden files.
  (dev / "valve" / "attributes_00.csv").write_text("file_name,d1p,d1v\n")
  (dev / "valve" / "train" / "README.txt").write_text("notes")
  write_audio(dev / "valve" / "train" / "._section_00_source_train_normal_0002_pat_01.wav")

  clips = layout.discover([dev, extra])
  table = [(c.root, c.machine, c.split, c.section, c.domain, c.label, c.attributes, c.content) for c in clips]
  assert table == [
    (str(dev), "fan", "train", "00", "source", "normal", "m-n_W", None),
    (str(dev), "fan", "train", "00", "target", "normal", "m-n_X", None),
    (str(dev), "fan", "supplemental", "00", "source", "normal", "noAttribute", "machine"),
    (str(dev), "fan", "test", "00", "source", "anomaly", "m-n_W", None),
    (str(dev), "valve", "train", "00", "source", "normal", "pat_01", None),
    (str(extra), "ToyCar", "train", "01", "source", "normal", "", None),
    (str(extra), "ToyCar", "test", "01", "source", None, "", None),
    (str(extra), "pump", "train", "03", "source", "normal", "", None),
    (str(extra), "pump", "test", "03", "source", None, "", None),
    (str(extra), "pump", "test", "03", "target", "normal", "", None),
  ]


def test_machine_folder_without_train_is_an_error(tmp_path):
  make_tree(tmp_path, ["fan/train/section_00_source_train_normal_0000_a_1.wav", "gearbox/test/section_00_0000.wav"])
  with pytest.raises(DataError, match=r"gearbox: machine folder has no train/"):
    layout.discover(tmp_path)


def test_root_without_machine_folders_is_an_error(tmp_path):
  make_tree(tmp_path, ["fan/recordings/section_00_source_train_normal_0000_a_1.wav"])
  (tmp_path / "fan" / "train").mkdir()  # a train folder without audio is no machine folder
  with pytest.raises(DataError, match=f"^{tmp_path}: no machine folders found"):
    layout.discover(tmp_path)
  with pytest.raises(DataError, match="is not a folder"):
    layout.discover(tmp_path / "missing")
  with pytest.raises(DataError, match="no data roots"):
    layout.discover([])


def test_unparseable_names_are_listed_with_their_paths(tmp_path):
  make_tree(
    tmp_path,
    [
      "fan/train/section_00_source_train_normal_0000_a_1.wav",
      "fan/train/take_3.wav",
      "fan/test/section_00_source_train_normal_0001_a_1.wav",
      "fan/train/section_00_source_train_anomaly_0002_a_1.wav",
      "pump/train/section_00_source_train_normal_0000_a_1.wav",
      "pump/train/take_4.wav",
    ],
  )
  with pytest.raises(DataError) as info:
    layout.discover(tmp_path)
  message = str(info.value)
  assert "3 file(s) cannot be used" in message
  assert (
    f"{tmp_path / 'pump'}: 1 file(s) cannot be used: {tmp_path / 'pump' / 'train' / 'take_4.wav'}: file name" in message
  )
  assert f"{tmp_path / 'fan' / 'train' / 'take_3.wav'}: file name does not follow" in message
  assert "a train file name in a test folder" in message
  assert "training files must be normal" in message


def test_the_same_clip_twice_is_an_error(tmp_path):
  make_tree(tmp_path, ["dev/fan/train/section_00_source_train_normal_0000_a_1.wav"])
  with pytest.raises(DataError, match="found twice"):
    layout.discover([tmp_path, tmp_path / "dev"])
  make_tree(tmp_path, ["eval/fan/train/section_00_source_train_normal_0000_a_1.wav"])
  with pytest.raises(DataError, match="found twice"):
    layout.discover([tmp_path / "dev", tmp_path / "eval"])
