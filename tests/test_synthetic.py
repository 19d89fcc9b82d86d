"""The synthetic generator writes DCASE-format data that parses back to exactly what was asked."""

import collections
import inspect
import json
import os

import numpy as np
import pytest
import soundfile
from sklearn.metrics import roc_auc_score

from configs import synthetic as synthetic_config
from featex_jax import synthetic
from featex_jax.data import audio
from featex_jax.data import classes
from featex_jax.data import layout
from featex_jax.errors import ConfigError

SMALL = dict(
  machines=2, sections=2, train_per_section=7, target_train_per_section=3, test_per_section=9, seconds=0.25, seed=3
)


def counts(clips):
  return collections.Counter((c.machine, c.section, c.split, c.domain, c.label) for c in clips)


def contents(root):
  """{relative path: bytes} of every file below root."""
  found = {}
  for directory, _, files in os.walk(root):
    for name in files:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, root)] = f.read()
  return found


@pytest.fixture(scope="module")
def dev_and_eval(tmp_path_factory):
  base = tmp_path_factory.mktemp("synthetic")
  dev = synthetic.generate(base / "dev", **SMALL)
  evaluation = synthetic.generate(base / "eval", layout="eval", **SMALL)
  return base, dev, evaluation


def test_dev_layout_parses_back_to_what_was_asked(dev_and_eval):
  base, summary, _ = dev_and_eval
  clips = layout.discover(base / "dev")
  expected = collections.Counter()
  for machine in ("hum", "whine"):
    for section in ("00", "01"):
      expected[(machine, section, "train", "source", "normal")] = 7
      expected[(machine, section, "train", "target", "normal")] = 3
      for cell, count in zip(
        [("source", "normal"), ("source", "anomaly"), ("target", "normal"), ("target", "anomaly")], (3, 2, 2, 2)
      ):
        expected[(machine, section, "test", *cell)] = count
  assert counts(clips) == expected
  assert summary["clips"] == {"train": 40, "test": 36} and summary["machines"] == ["hum", "whine"]
  assert summary["roots"] == [str(base / "dev")] and summary["ground_truth"] is None
  source = {f"speed_{speed}_load_{load}" for speed, load in synthetic.SOURCE_ATTRIBUTES}
  target = {f"speed_{speed}_load_{load}" for speed, load in synthetic.TARGET_ATTRIBUTES}
  assert {c.attributes for c in clips if c.domain == "source"} == source
  assert {c.attributes for c in clips if c.domain == "target"} == target and not source & target
  assert classes.ClassTable.from_clips(classes.training_clips(clips)).n_classes == 2 * 2 * (6 + 2)
  for clip in clips[::9]:
    header = audio.read_header(clip.path)
    assert (header.frames, header.sample_rate, header.channels, header.subtype) == (4000, 16000, 1, "PCM_16")
    wav = audio.load_audio(clip.path)
    assert wav.dtype == np.float32 and 0 < np.abs(wav).max() < 1


def test_eval_layout_with_ground_truth_round_trip(dev_and_eval):
  base, dev_summary, summary = dev_and_eval
  assert summary["ground_truth"] == str(base / "eval") and summary["clips"] == dev_summary["clips"]
  tests = [c for c in layout.discover(base / "eval") if c.split == "test"]
  assert {(c.label, c.domain, c.attributes) for c in tests} == {(None, None, "")}
  assert sorted(c.file_name for c in tests if c.machine == "hum" and c.section == "01") == [
    f"section_01_{i:04d}.wav" for i in range(9)
  ]

  labelled = layout.discover(base / "eval", ground_truth=base / "eval")
  dev = {(c.machine, c.file_name): c for c in layout.discover(base / "dev")}
  assert counts(labelled) == counts(dev.values())
  # The attribute table names each anonymous test clip's development-set twin: same audio, same truth.
  for clip in (c for c in labelled if c.split == "test"):
    table = base / "eval" / "ground_truth_attributes" / f"ground_truth_{clip.machine}_section_{clip.section}_test.csv"
    original = dict(line.split(",") for line in table.read_text().splitlines())[clip.file_name]
    twin = dev[(clip.machine, original + ".wav")]
    assert (clip.label, clip.domain, clip.attributes) == (twin.label, twin.domain, twin.attributes)
    np.testing.assert_array_equal(
      soundfile.read(clip.path, dtype="int16")[0], soundfile.read(twin.path, dtype="int16")[0]
    )
  training = lambda root: {k: v for k, v in contents(root).items() if f"{os.sep}train{os.sep}" in k}
  assert training(base / "eval") == training(base / "dev") != {}


def test_both_layouts_hold_different_machine_types(tmp_path):
  summary = synthetic.generate(
    tmp_path / "out",
    layout="both",
    machines=1,
    train_per_section=6,
    target_train_per_section=2,
    test_per_section=4,
    seconds=0.25,
  )
  dev_root, eval_root = str(tmp_path / "out" / "dev_data"), str(tmp_path / "out" / "eval_data")
  assert summary["roots"] == [dev_root, eval_root] and summary["ground_truth"] == eval_root
  clips = layout.discover(summary["roots"], ground_truth=summary["ground_truth"])
  assert {(c.root, c.machine) for c in clips} == {(dev_root, "hum"), (eval_root, "whine")}
  assert all(c.label and c.domain for c in clips)
  assert summary["clips"] == {"train": 16, "test": 8}


def test_deterministic_by_seed_and_workers(tmp_path):
  small = dict(machines=2, train_per_section=6, target_train_per_section=2, test_per_section=4, seconds=0.25)
  synthetic.generate(tmp_path / "a", seed=5, **small)
  synthetic.generate(tmp_path / "b", seed=5, workers=2, **small)
  synthetic.generate(tmp_path / "c", seed=6, **small)
  a, b, c = contents(tmp_path / "a"), contents(tmp_path / "b"), contents(tmp_path / "c")
  assert a == b
  assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_the_synthetic_config_keywords_are_accepted():
  keywords = dict(synthetic_config.get_config().synthetic)
  inspect.signature(synthetic.generate).bind("out", **keywords)
  assert {"machines", "train_per_section", "target_train_per_section", "test_per_section", "seconds", "seed"} <= set(
    keywords
  )


def test_refuses_to_overwrite_and_leaves_nothing_behind(tmp_path):
  (tmp_path / "taken").mkdir()
  (tmp_path / "taken" / "keep.txt").write_text("mine")
  with pytest.raises(ConfigError, match="taken exists and is not an empty folder"):
    synthetic.generate(tmp_path / "taken")
  assert os.listdir(tmp_path / "taken") == ["keep.txt"]
  with pytest.raises(ValueError, match="test_per_section must be 0 or at least 4"):
    synthetic.generate(tmp_path / "new", test_per_section=3, seconds=0.25)
  with pytest.raises(ValueError, match="layout"):
    synthetic.generate(tmp_path / "new", layout="flat")
  assert sorted(os.listdir(tmp_path)) == ["taken"]  # no partial output, no staging folder
  (tmp_path / "empty").mkdir()
  synthetic.generate(
    tmp_path / "empty", machines=1, train_per_section=1, target_train_per_section=0, test_per_section=0, seconds=0.1
  )
  assert len(layout.discover(tmp_path / "empty")) == 1


def test_command_line(tmp_path, capsys):
  argv = [
    str(tmp_path / "cli"),
    "--machines",
    "1",
    "--train-per-section",
    "2",
    "--target-train-per-section",
    "1",
    "--test-per-section",
    "4",
    "--seconds",
    "0.1",
    "--layout",
    "eval",
    "--seed",
    "7",
    "--json",
  ]
  assert synthetic.main(argv) == 0
  summary = json.loads(capsys.readouterr().out)
  assert summary["clips"] == {"train": 3, "test": 4} and summary["seed"] == 7 and summary["layout"] == "eval"
  assert len(layout.discover(tmp_path / "cli", ground_truth=tmp_path / "cli")) == 7
  with pytest.raises(
    ConfigError, match="cli exists and is not an empty folder"
  ):  # the command line prints it (test_command_lines)
    synthetic.main(argv)


def log_spectrum(path):
  """Mean log power spectrum over 1024-sample frames, minus its mean (so gain does not count)."""
  wav = audio.load_audio(path).astype(np.float64)
  frames = np.lib.stride_tricks.sliding_window_view(wav, 1024)[::512] * np.hanning(1024)
  spectrum = np.log(np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0) + 1e-10)
  return spectrum - spectrum.mean()


def test_machines_are_distinct_and_anomalies_detectable_but_not_trivial(tmp_path):
  synthetic.generate(
    tmp_path / "d", machines=2, train_per_section=60, target_train_per_section=6, test_per_section=48, seconds=2.0
  )
  clips = layout.discover(tmp_path / "d")
  features = np.array([log_spectrum(c.path) for c in clips])
  train = np.array([c.split == "train" for c in clips])
  machines = np.array([c.machine for c in clips])
  anomalous = np.array([c.label == "anomaly" for c in clips])
  domains = np.array([c.domain for c in clips])
  distances = np.sqrt(((features[~train, None] - features[None, train]) ** 2).sum(-1))
  # Machine types sound distinct: every test clip's nearest training clip is of its own type.
  assert (machines[train][distances.argmin(1)] == machines[~train]).all()
  aucs = []
  for machine in ("hum", "whine"):
    own = machines[train] == machine
    mine = machines[~train] == machine
    score = distances[mine][:, own].min(1)  # nearest-neighbour distance to the machine's training clips
    y, d = anomalous[~train][mine], domains[~train][mine]
    for domain in ("source", "target"):
      chosen = (d == domain) | y  # the official per-domain AUC: the domain's normals, all anomalies
      aucs.append(roc_auc_score(y[chosen], score[chosen]))
  # Even this crude detector finds the anomalies well above chance, and does not separate them all.
  assert 0.65 < np.mean(aucs) < 0.95 and max(aucs) < 1.0, aucs
