"""Every command line reports the project's errors as `error: ...` naming the file or field, exit
status 2, no traceback; bad audio is found in one pass and listed all at once."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from audio_files import make_tree
from audio_files import write_audio

from configs import synthetic as synthetic_config
from featex_jax import configuration
from featex_jax import errors

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAIN = "fan/train/section_00_source_train_normal_{:04d}_a_{}.wav"


def run(*command):
  """(exit status, stdout, stderr lines) of a command line run as a user runs it."""
  args = [sys.executable, *map(str, command)]
  result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
  return result.returncode, result.stdout, result.stderr.splitlines()


def assert_one_error_line(result, *names):
  """Exit 2 and exactly one line on stderr, `error: ...`, naming each of `names`."""
  status, _, stderr = result
  assert status == errors.EXIT_STATUS and len(stderr) == 1, stderr
  assert stderr[0].startswith("error: ") and all(str(name) in stderr[0] for name in names), stderr


def good_data(root, classes=1):
  """A tiny data set: one machine, 2 training clips of each of `classes` attribute strings, 1 test clip."""
  make_tree(
    root,
    [TRAIN.format(2 * c + i, c) for c in range(classes) for i in range(2)]
    + ["fan/test/section_00_source_test_normal_0000_a_0.wav"],
  )
  return root


def write_bad(path, kind):
  """A bad clip of one kind at `path`; returns the words its error must say."""
  path.parent.mkdir(parents=True, exist_ok=True)
  if kind == "nan":
    write_audio(path, np.array([0.1, np.nan] * 800), subtype="FLOAT")
    return "NaN or Inf samples"
  if kind == "truncated":
    data = write_audio(path, 0.1 * np.random.default_rng(0).standard_normal(16000)).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "truncated file"
  if kind == "empty":
    path.write_bytes(b"")
    return "empty file"
  if kind == "silent":
    write_audio(path, np.zeros(16000))
    return "silent clip"
  path.write_text("not audio, only named .wav")
  return "cannot read audio"


BAD_KINDS = ("nan", "truncated", "empty", "silent", "not_audio")


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_check_names_a_bad_clip_in_one_line(tmp_path, kind):
  root = good_data(tmp_path / "data")
  bad = root / TRAIN.format(9, 0)
  problem = write_bad(bad, kind)
  assert_one_error_line(
    run("-m", "featex_jax.data", root, "--check", "--no-progress"), "1 of 4 clips are unusable", f"{bad}: {problem}"
  )


def test_check_lists_every_bad_clip_and_passes_good_data(tmp_path):
  root = good_data(tmp_path / "data")
  status, stdout, stderr = run("-m", "featex_jax.data", root, "--check", "--no-progress")
  assert status == 0 and stderr == [] and "N = 1 classes (data.class_table=reference)" in stdout
  bad = {
    root / TRAIN.format(10 + i, 0): write_bad(root / TRAIN.format(10 + i, 0), kind) for i, kind in enumerate(BAD_KINDS)
  }
  status, stdout, stderr = run("-m", "featex_jax.data", root, "--check")  # with the progress bar
  assert status == errors.EXIT_STATUS and stdout == ""
  assert "clip/s" in "".join(stderr) and "Traceback" not in "\n".join(stderr)
  errors_at = next(i for i, line in enumerate(stderr) if line.startswith("error: "))
  assert stderr[errors_at] == (
    f"error: {len(bad)} of {len(bad) + 3} clips are unusable (config.data.skip_bad_clips=True skips them):"
  )
  assert_lists(stderr[errors_at + 1 :], bad)


def assert_lists(lines, problems):
  """One indented line per bad file, in the data set's order, naming the file and its problem."""
  assert len(lines) == len(problems), lines
  for line, (path, problem) in zip(lines, problems.items()):
    assert line.startswith(f"  {path}: {problem}"), line


def test_layout_and_name_errors_are_one_line(tmp_path):
  make_tree(tmp_path / "flat", ["section_00_source_train_normal_0000_a_1.wav"])  # no machine folder
  assert_one_error_line(run("-m", "featex_jax.data", tmp_path / "flat"), tmp_path / "flat", "no machine folders found")
  root = good_data(tmp_path / "data")
  odd = make_tree(root, ["fan/train/recording_take_3.wav"])[0]
  assert_one_error_line(run("-m", "featex_jax.data", root), odd, "does not follow any DCASE Task 2 naming")


def run_train(data, workdir, *overrides):
  """run_train.py on `data`: every error tested here comes before the model is built."""
  return run(
    REPO / "run_train.py",
    "--dataset=synthetic",
    f"--data_dir={data}",
    f"--workdir={workdir}",
    "--noprogress",
    *overrides,
  )


def test_training_lists_every_bad_clip_before_it_starts(tmp_path):
  root = good_data(tmp_path / "data")
  bad = {
    root / TRAIN.format(10 + i, 0): write_bad(root / TRAIN.format(10 + i, 0), kind) for i, kind in enumerate(BAD_KINDS)
  }
  status, _, stderr = run_train(root, tmp_path / "run")
  assert status == errors.EXIT_STATUS and "Traceback" not in "\n".join(stderr)
  assert (
    stderr[0] == f"error: {len(bad)} of {len(bad) + 2} clips are unusable (config.data.skip_bad_clips=True skips them):"
  )
  assert_lists(stderr[1:], bad)
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_config_and_run_folder_errors_are_one_line(tmp_path):
  root = good_data(tmp_path / "data")
  assert_one_error_line(
    run_train(root, tmp_path / "run", "--config.augment.featex=False"),
    "loss.featex_weight=1.0 but augment.featex is off",
  )
  other = synthetic_config.get_config()
  other.loss.weight_decay = 1e-3
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "config.json").write_text(json.dumps(configuration.to_dict(other)))
  assert_one_error_line(
    run_train(root, tmp_path / "old"),
    tmp_path / "old" / "config.json",
    "loss.weight_decay: checkpoint 0.001 vs now 1e-05",
  )
  assert_one_error_line(run(REPO / "run_train.py", "--dataset=dcase1999"), "unknown --dataset 'dcase1999'")
  assert_one_error_line(
    run(REPO / "run_eval.py", f"--workdir={tmp_path / 'none'}"), f"{tmp_path / 'none'} is not a featex-jax run"
  )


def test_a_bad_weights_file_is_one_line(golden, tmp_path):
  weights = {key: value for key, value in golden.items() if key.startswith("w/") and key != "w/sc_ada_cos_2/s12_16"}
  np.savez(tmp_path / "edited.npz", **weights)
  assert_one_error_line(
    run("-m", "featex_jax.convert_keras", tmp_path / "edited.npz", tmp_path / "out"),
    tmp_path / "edited.npz",
    "sc_ada_cos_2 has no scale",
  )
  assert not (tmp_path / "out").exists()


def test_scoring_and_synthetic_errors_are_one_line(tmp_path):
  clip = write_audio(tmp_path / "fan" / "section_00_0000.wav")
  assert_one_error_line(
    run("-m", "featex_jax.score", "--workdir", tmp_path / "run", clip), tmp_path / "run" / "scoring.json", "is missing"
  )
  assert_one_error_line(run("-m", "featex_jax.synthetic", tmp_path), tmp_path, "is not an empty folder")
  assert_one_error_line(
    run("-m", "featex_jax.synthetic", tmp_path / "new", "--test-per-section", "3"),
    "test_per_section must be 0 or at least 4",
  )


def test_only_the_projects_errors_lose_their_traceback(capsys):
  def fails(error):
    raise error

  with pytest.raises(SystemExit) as exit_info:
    errors.run_command(fails, errors.ConfigError("train.batch_size=3 is not divisible by the 8 devices"))
  assert exit_info.value.code == errors.EXIT_STATUS
  assert capsys.readouterr().err == "error: train.batch_size=3 is not divisible by the 8 devices\n"
  with pytest.raises(ZeroDivisionError):  # a bug: the traceback stays
    errors.run_command(fails, ZeroDivisionError("bug"))
  with pytest.raises(SystemExit) as exit_info:
    errors.run_command(lambda: 0)
  assert exit_info.value.code == 0
