"""The official evaluator's ground-truth CSVs label evaluation test clips; a mismatch is a clear error."""

import pytest
from audio_files import make_tree

from featex_jax.data import ground_truth
from featex_jax.data import layout
from featex_jax.data.errors import DataError

# Three test files of ToyDrone as the DCASE2023 evaluator lists them (its attribute column has no extension).
TRUTH = {
  "section_00_0000.wav": ("anomaly", "target", "car_C1_spd_1_mic_2"),
  "section_00_0001.wav": ("normal", "target", "car_C1_spd_1_mic_2"),
  "section_00_0002.wav": ("normal", "source", "car_B2_spd_2_mic_1"),
}


def write_csvs(folder, machine="ToyDrone", truth=TRUTH, which=ground_truth.FOLDERS):
  csv_name = f"ground_truth_{machine}_section_00_test.csv"
  for name in which:
    (folder / name).mkdir(parents=True, exist_ok=True)
    lines = []
    for file_name, (label, domain, attributes) in truth.items():
      value = {
        ground_truth.DATA: str(int(label == "anomaly")),
        ground_truth.DOMAIN: str(int(domain == "target")),
        ground_truth.ATTRIBUTES: f"section_00_{domain}_test_{label}_0001_{attributes}",
      }[name]
      lines.append(f"{file_name},{value}\n")
    (folder / name / csv_name).write_text("".join(lines))


@pytest.fixture
def eval_set(tmp_path):
  root = tmp_path / "eval_data"
  make_tree(
    root,
    ["ToyDrone/train/section_00_source_train_normal_0000_car_A1_spd_3_mic_1.wav"]
    + [f"ToyDrone/test/{name}" for name in TRUTH],
  )
  return root


def test_labels_domains_and_attributes_come_from_the_csvs(eval_set, tmp_path):
  write_csvs(tmp_path / "gt")
  unlabelled = [c for c in layout.discover(eval_set) if c.split == "test"]
  assert [(c.label, c.domain, c.attributes) for c in unlabelled] == [(None, None, "")] * 3
  clips = layout.discover(eval_set, ground_truth=tmp_path / "gt")
  assert {c.file_name: (c.label, c.domain, c.attributes) for c in clips if c.split == "test"} == TRUTH
  assert [c for c in clips if c.split == "train"] == [c for c in layout.discover(eval_set) if c.split == "train"]


@pytest.mark.parametrize("which", [(ground_truth.DATA, ground_truth.DOMAIN), (ground_truth.ATTRIBUTES,)])
def test_any_subset_of_the_tables(eval_set, tmp_path, which):
  write_csvs(tmp_path / "gt", which=which)
  clips = [c for c in layout.discover(eval_set, ground_truth=tmp_path / "gt") if c.split == "test"]
  attributes = {name: a if ground_truth.ATTRIBUTES in which else "" for name, (_, _, a) in TRUTH.items()}
  assert {c.file_name: (c.label, c.domain, c.attributes) for c in clips} == {
    name: (label, domain, attributes[name]) for name, (label, domain, _) in TRUTH.items()
  }


def test_write_then_read_round_trip(tmp_path):
  rows = [
    ground_truth.Row("fan", "01", name, f"section_01_{domain}_test_{label}_0007_{attributes}", label, domain)
    for name, (label, domain, attributes) in reversed(TRUTH.items())
  ]
  ground_truth.write(tmp_path, rows)
  assert ground_truth.read(tmp_path) == {
    ("fan", "01"): {
      name: ground_truth.Truth(label, domain, attributes, f"section_01_{domain}_test_{label}_0007_{attributes}.wav")
      for name, (label, domain, attributes) in TRUTH.items()
    }
  }
  # The official format: no header, rows sorted by file name, 0/1 values, names without extension.
  assert (tmp_path / ground_truth.DOMAIN / "ground_truth_fan_section_01_test.csv").read_text() == (
    "section_00_0000.wav,1\nsection_00_0001.wav,1\nsection_00_0002.wav,0\n"
  )


def test_csv_listing_a_missing_file(eval_set, tmp_path):
  write_csvs(tmp_path / "gt", truth={**TRUTH, "section_00_0003.wav": ("normal", "source", "car_A1_spd_3_mic_1")})
  with pytest.raises(
    DataError, match=r"ToyDrone section 00 does not match(.|\n)*listed but not found: section_00_0003"
  ):
    layout.discover(eval_set, ground_truth=tmp_path / "gt")


def test_test_file_missing_from_the_csv(eval_set, tmp_path):
  write_csvs(tmp_path / "gt", truth=dict(list(TRUTH.items())[:2]))
  with pytest.raises(DataError, match=r"found but not listed: section_00_0002\.wav"):
    layout.discover(eval_set, ground_truth=tmp_path / "gt")


def test_tables_that_disagree(eval_set, tmp_path):
  write_csvs(tmp_path / "gt")
  flipped = tmp_path / "gt" / ground_truth.DATA / "ground_truth_ToyDrone_section_00_test.csv"
  flipped.write_text(flipped.read_text().replace("section_00_0001.wav,0", "section_00_0001.wav,1"))
  with pytest.raises(DataError, match="section_00_0001.wav in .* disagree on the label: 'anomaly' and 'normal'"):
    ground_truth.read(tmp_path / "gt")
  write_csvs(tmp_path / "gt2")
  shorter = tmp_path / "gt2" / ground_truth.DOMAIN / "ground_truth_ToyDrone_section_00_test.csv"
  shorter.write_text("".join(shorter.read_text().splitlines(keepends=True)[:2]))
  with pytest.raises(DataError, match="list different files"):
    ground_truth.read(tmp_path / "gt2")


def test_name_and_ground_truth_that_disagree(tmp_path):
  # DCASE2021 evaluation names state the domain; the ground truth must not contradict it.
  make_tree(
    tmp_path / "data",
    ["pump/train/section_03_source_train_normal_0000.wav", "pump/test/section_03_source_test_0000.wav"],
  )
  (tmp_path / "gt" / ground_truth.DOMAIN).mkdir(parents=True)
  (tmp_path / "gt" / ground_truth.DOMAIN / "ground_truth_pump_section_03_test.csv").write_text(
    "section_03_source_test_0000.wav,1\n"
  )
  with pytest.raises(DataError, match="section_03_source_test_0000.wav .*disagree on the domain"):
    layout.discover(tmp_path / "data", ground_truth=tmp_path / "gt")


@pytest.mark.parametrize(
  "line, problem",
  [
    ("section_00_0000.wav,2", "value must be 0 or 1"),
    ("section_00_0000.wav", "expected two columns"),
    ("section_00_0000.wav,0,1", "expected two columns"),
  ],
)
def test_malformed_rows_name_file_and_line(tmp_path, line, problem):
  folder = tmp_path / ground_truth.DATA
  folder.mkdir()
  (folder / "ground_truth_fan_section_00_test.csv").write_text(f"section_00_0001.wav,0\n{line}\n")
  with pytest.raises(DataError, match=f"ground_truth_fan_section_00_test.csv:2: {problem}"):
    ground_truth.read(tmp_path)


def test_malformed_folders(eval_set, tmp_path):
  with pytest.raises(DataError, match="no ground-truth folders"):
    ground_truth.read(tmp_path)
  (tmp_path / ground_truth.DATA).mkdir()
  (tmp_path / ground_truth.DATA / "labels.csv").write_text("a.wav,0\n")
  with pytest.raises(DataError, match="labels.csv: expected a name like"):
    ground_truth.read(tmp_path)
  (tmp_path / ground_truth.DATA / "labels.csv").unlink()
  (tmp_path / ground_truth.DATA / "ground_truth_fan_section_00_test.csv").write_text(
    "section_00_0000.wav,0\nsection_00_0000.wav,1\n"
  )
  with pytest.raises(DataError, match="listed twice"):
    ground_truth.read(tmp_path)


def test_tables_of_absent_machines_are_ignored_unless_none_is_present(eval_set, tmp_path):
  write_csvs(tmp_path / "gt")
  write_csvs(tmp_path / "gt", machine="bandsaw")  # the evaluator ships every machine of the year
  clips = layout.discover(eval_set, ground_truth=tmp_path / "gt")
  assert all(c.label for c in clips)
  write_csvs(tmp_path / "other", machine="bandsaw")
  with pytest.raises(DataError, match=r"covers machine types \['bandsaw'\], none of which was found"):
    layout.discover(eval_set, ground_truth=tmp_path / "other")


def test_read_pairs_labels_and_domains_by_name(tmp_path):
  names = ["section_00_0001.wav", "section_00_0000.wav"]
  for folder, values in ((ground_truth.DATA, [1, 0]), (ground_truth.DOMAIN, [0, 1])):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "ground_truth_fan_section_00_test.csv").write_text(
      "".join(f"{n},{v}\n" for n, v in zip(names, values))
    )
  # The domain file in another row order: pairing goes by name.
  (tmp_path / ground_truth.DOMAIN / "ground_truth_fan_section_00_test.csv").write_text(
    "section_00_0000.wav,1\nsection_00_0001.wav,0\n"
  )
  assert ground_truth.read(tmp_path) == {
    ("fan", "00"): {
      "section_00_0001.wav": ground_truth.Truth("anomaly", "source"),
      "section_00_0000.wav": ground_truth.Truth("normal", "target"),
    }
  }
  (tmp_path / ground_truth.DATA / "ground_truth_fan_section_00_test.csv").write_text("a.wav,1\nb.wav,x\n")
  with pytest.raises(DataError, match=r"fan_section_00_test\.csv:2: value must be 0 or 1, got 'x'"):
    ground_truth.read(tmp_path)
