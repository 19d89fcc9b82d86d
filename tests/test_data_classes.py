"""Training classes and scoring groups in the reference's LabelEncoder order; saved and compared by name."""

import json
import os

import numpy as np
import pytest
from sklearn.preprocessing import LabelEncoder

from featex_jax.data import classes
from featex_jax.data import layout
from featex_jax.data.errors import DataError
from featex_jax.errors import ConfigError


def clip(
  machine="fan", section="00", attributes="m-n_W", domain="source", split="train", label="normal", file_name="x.wav"
):
  return layout.Clip(
    path=f"/data/{machine}/{split}/{file_name}",
    file_name=file_name,
    machine=machine,
    section=section,
    domain=domain,
    split=split,
    label=label,
    attributes=attributes,
    root="/data",
  )


def reference_name(c):
  """The reference's label string: category_section###attributes###is_source."""
  return "###".join([f"{c.machine}_{c.section}", c.attributes, str(c.domain == "source")])


def random_clips(seed, n=200):
  rng = np.random.default_rng(seed)
  machines = ["ToyCar", "ToyTrain", "bearing", "fan", "Vacuum", "valve", "toy"]  # mixed case: code-point order
  attributes = ["noAttribute", "", "car_A1_spd_28V_mic_1", "car_A1_spd_3_mic_1", "vel_9_loc_A", "m-n_W", "pat_03"]
  return [
    clip(
      machine=rng.choice(machines),
      section=f"{rng.integers(3):02d}",
      attributes=rng.choice(attributes),
      domain=rng.choice(["source", "target"]),
    )
    for _ in range(n)
  ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_order_and_indices_match_the_reference_label_encoders(seed):
  clips = random_clips(seed)
  table = classes.ClassTable.from_clips(clips)
  encoder = LabelEncoder().fit([reference_name(c) for c in clips])
  assert table.class_names == list(encoder.classes_)
  assert table.n_classes == len(encoder.classes_)
  assert [table.class_index(c) for c in clips] == list(encoder.transform([reference_name(c) for c in clips]))
  groups = LabelEncoder().fit([f"{c.machine}_{c.section}" for c in clips])
  assert [f"{machine}_{section}" for machine, section in table.groups] == list(groups.classes_)


def test_real_sample_classes(dcase_sample):
  clips = layout.discover(dcase_sample)
  training = classes.training_clips(clips)
  assert {c.split for c in training} == {"train"} and len(training) == 14
  table = classes.ClassTable.from_clips(training)
  assert table.n_classes == len({(c.machine, c.section, c.attributes, c.domain) for c in training}) == 12
  assert table.n_groups == 7
  assert table.class_names[:2] == ["ToyCar_00###car_C2_spd_31V_mic_1###True", "ToyCar_00###car_D2_spd_34V_mic_1###True"]
  # A test clip whose class never occurs in training has no index; its group does.
  unseen = next(c for c in clips if c.machine == "fan" and c.attributes == "m-n_W")
  with pytest.raises(DataError, match="fan_00###m-n_W###True' is not one of the 12 training classes"):
    table.class_index(unseen)
  assert unseen.group == ("fan", "00") and unseen.group in table.groups


def reference_encoder_keys(root):
  """The reference's key strings ("encode ids as labels"), restated from its file handling: every
  file of <machine>/train and of the development set's <machine>/test, as
  '<machine>_<name part 1>###<name parts 6..>###<name part 2 == source>'."""
  keys = []
  for machine in sorted(os.listdir(root)):
    for split in ("train", "test"):
      folder = os.path.join(root, machine, split)
      for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        parts = name[: -len(".wav")].split("_")
        keys.append("###".join([f"{machine}_{parts[1]}", "_".join(parts[6:]), str(parts[2] == "source")]))
  return keys


def test_reference_table_is_the_reference_label_encoder_on_real_clips(dcase_sample):
  root = dcase_sample
  clips = layout.discover(root)
  encoder = LabelEncoder().fit(reference_encoder_keys(root))
  table = classes.ClassTable.from_clips(classes.table_clips(clips))
  assert table.n_classes == len(encoder.classes_) == 26  # 12 from the training clips, 14 more from the test clips
  assert table.class_names == list(encoder.classes_)
  training = classes.training_clips(clips)
  assert [table.class_index(c) for c in training] == list(encoder.transform([reference_name(c) for c in training]))
  assert classes.ClassTable.from_clips(classes.table_clips(clips, "training")).n_classes == 12


def test_evaluation_test_clips_never_add_classes():
  """Anonymous evaluation test names state nothing: even with ground truth filled in (domain,
  attributes, label), the reference's table does not see them; development test names do."""
  training = clip(attributes="a_1")
  development_test = clip(
    attributes="a_2", split="test", label="anomaly", file_name="section_00_source_test_anomaly_0000_a_2.wav"
  )
  evaluation_test = clip(
    machine="pump", attributes="a_3", split="test", label="anomaly", file_name="section_00_0000.wav"
  )
  evaluation_train = clip(machine="pump", attributes="a_1")
  all_clips = [training, development_test, evaluation_test, evaluation_train]
  names = lambda mode: classes.ClassTable.from_clips(classes.table_clips(all_clips, mode)).class_names
  assert names("reference") == ["fan_00###a_1###True", "fan_00###a_2###True", "pump_00###a_1###True"]
  assert names("training") == ["fan_00###a_1###True", "pump_00###a_1###True"]
  with pytest.raises(ConfigError, match="data.class_table must be one of"):
    classes.table_clips(all_clips, "all")


def test_json_round_trip():
  table = classes.ClassTable.from_clips(random_clips(3))
  restored = classes.ClassTable.from_dict(json.loads(json.dumps(table.to_dict())))
  assert restored == table
  restored.check_matches(table)


@pytest.mark.parametrize(
  "data",
  [
    {"classes": []},
    {"format": "featex_jax.class_table/1", "classes": [{"machine": "fan"}], "groups": []},
    {"format": "featex_jax.class_table/1", "groups": []},
    "not a dict",
  ],
)
def test_malformed_table(data):
  with pytest.raises(DataError):
    classes.ClassTable.from_dict(data)


def test_unsorted_or_inconsistent_table_is_rejected():
  data = classes.ClassTable.from_clips([clip(domain="source"), clip(domain="target")]).to_dict()
  data["classes"].reverse()
  with pytest.raises(DataError, match="sorted"):
    classes.ClassTable.from_dict(data)
  data["classes"].reverse()
  data["groups"].append(["pump", "00"])
  with pytest.raises(DataError, match="groups"):
    classes.ClassTable.from_dict(data)


def test_check_matches_names_every_difference():
  ours = classes.ClassTable.from_clips([clip(attributes="a_1"), clip(attributes="a_2"), clip(machine="pump")])
  theirs = classes.ClassTable.from_clips([clip(attributes="a_1"), clip(attributes="a_3"), clip(machine="pump")])
  with pytest.raises(DataError) as info:
    ours.check_matches(theirs, "the data", "run 7")
  message = str(info.value)
  assert "the training classes of the data (3) and run 7 (3) differ" in message
  assert "only in the data: fan_00###a_2###True" in message
  assert "only in run 7: fan_00###a_3###True" in message
  assert "a_1" not in message


def test_clips_without_a_domain_have_no_class():
  with pytest.raises(DataError, match="no domain known"):
    classes.ClassTable.from_clips([clip(), clip(domain=None, split="test", label=None)])
  with pytest.raises(DataError, match="no clips"):
    classes.ClassTable.from_clips([])
