"""Tiny real runs on synthetic DCASE-format data: train -> evaluate -> score, resume after
SIGKILL, multi-host training, and the errors a user meets on the way."""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from sklearn import metrics as skmetrics

from configs import synthetic as synthetic_config
from featex_jax import checkpoint
from featex_jax import configuration
from featex_jax import embedding
from featex_jax import evaluate
from featex_jax import files
from featex_jax import results
from featex_jax import score
from featex_jax import synthetic
from featex_jax import train
from featex_jax.data import errors

REPO = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = {
  "data.clip_samples": 16000,
  "train.batch_size": 8,
  "train.epochs": 1,
  "eval.batch_size": 8,
  "eval.kmeans_clusters": 2,
}


def tiny_config(**changes):
  config = synthetic_config.get_config()
  for name, value in {**OVERRIDES, **changes}.items():
    section, field = name.split(".")
    config[section][field] = value
  return config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """Development and evaluation sets (2 + 2 machine types, 12 training clips each) with official
  ground-truth CSVs."""
  out = tmp_path_factory.mktemp("synthetic") / "set"
  synthetic.generate(
    out, machines=2, train_per_section=10, target_train_per_section=2, test_per_section=8, seconds=1.0, layout="both"
  )
  return out


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("runs") / "tiny"
  config = tiny_config()
  config.data.cache_dir = str(workdir.parent / "cache")
  roots = [str(data / "dev_data"), str(data / "eval_data")]
  train.train(configuration.apply_command_line(config, data_dirs=roots), workdir, progress=False)
  evaluation, out = evaluate.evaluate_runs([workdir], roots, ground_truth=str(data / "eval_data"), progress=False)
  return config, workdir, roots, evaluation, out


def read_csv(path):
  with open(path, newline="") as f:
    return [tuple(row) for row in csv.reader(f)]


def test_training_writes_checkpoint_metadata_and_metrics(trained):
  config, workdir, *_ = trained
  assert checkpoint.latest_step(workdir) == 6  # 48 training clips // batch 8, one epoch
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == 6 and '"loss/total"' in lines[-1]
  assert (workdir / "config.json").is_file() and (workdir / "classes.json").is_file()


def test_evaluation_metrics_are_sklearns_on_the_submission_files(trained, data):
  _, _, _, evaluation, out = trained
  sections = {(s.machine, s.section): s for s in evaluation.sections}
  assert len(sections) == 4  # 2 development + 2 evaluation machine types, one section each
  for (machine, section), s in sections.items():
    rows = read_csv(out / "submission" / f"anomaly_score_{machine}_section_{section}_test.csv")
    decisions = read_csv(out / "submission" / f"decision_result_{machine}_section_{section}_test.csv")
    assert [r[0] for r in rows] == [r[0] for r in decisions] == list(s.file_names)
    scores = np.array([float(r[1]) for r in rows])
    np.testing.assert_allclose(scores, s.scores, rtol=1e-6)
    assert set(r[1] for r in decisions) <= {"0", "1"}
    anomalous, target = np.asarray(s.is_anomaly, bool), np.asarray(s.is_target, bool)
    if machine in {p.name for p in (data / "dev_data").iterdir()}:  # labels from the file names
      assert list(anomalous) == ["_anomaly_" in name for name in s.file_names]
    m = evaluation.metrics[(machine, section)]
    source_set = ~target | anomalous
    assert m.auc_source == pytest.approx(skmetrics.roc_auc_score(anomalous[source_set], scores[source_set]))
    assert m.pauc == pytest.approx(skmetrics.roc_auc_score(anomalous, scores, max_fpr=0.1))
  assert 0.0 <= evaluation.summary["official_score"] <= 1.0
  assert (out / "results.json").is_file() and "Official score" in (out / "results.txt").read_text()
  assert len(list((out / "plots").glob("*.png"))) == 8


def test_an_ensemble_reports_each_member_alone_and_the_averaged_scores(trained, data, tmp_path):
  """Two members: each evaluated alone equals evaluating its run by itself; the ensemble's
  submission scores are the mean of the members' scores."""
  config, first, roots, alone_first, _ = trained
  second = tmp_path / "second"
  config = configuration.apply_command_line(config, data_dirs=roots)
  config.seed += 1
  train.train(config, second, progress=False)
  alone_second, _ = evaluate.evaluate_runs(
    [second], roots, ground_truth=str(data / "eval_data"), out=tmp_path / "second_eval", progress=False
  )
  # The second run first: an evaluation writes scoring.json into its first run, and the shared
  # `trained` run must keep its own for the scoring tests.
  both, out = evaluate.evaluate_runs(
    [second, first], roots, ground_truth=str(data / "eval_data"), out=tmp_path / "ensemble", progress=False
  )
  assert [m.workdir for m in both.members] == [str(second), str(first)]
  for member, alone in zip(both.members, (alone_second, alone_first)):
    assert member.summary["official_score"] == pytest.approx(alone.summary["official_score"], rel=1e-6)
    member_figures, alone_figures = results.headline_figures(member.summary), results.headline_figures(alone.summary)
    for group, figures in alone_figures["groups"].items():
      assert member_figures["groups"][group] == pytest.approx(figures, rel=1e-6), group
  for s, a, b in zip(both.sections, alone_first.sections, alone_second.sections):
    np.testing.assert_allclose(s.scores, (a.scores + b.scores) / 2, rtol=1e-5)
  written = json.loads((out / "results.json").read_text())
  official = [alone_first.summary["official_score"], alone_second.summary["official_score"]]
  assert written["member_statistics"]["official_score"]["mean"] == pytest.approx(np.mean(official))
  assert written["member_statistics"]["official_score"]["std"] == pytest.approx(np.std(official))
  assert "each evaluated alone" in (out / "results.txt").read_text()


def test_scoring_new_recordings_reuses_the_stored_centres(trained, data, capsys):
  _, workdir, _, evaluation, _ = trained
  s = evaluation.sections[0]
  folder = next(p for p in data.rglob(s.machine) if p.is_dir()) / "test"
  files = [str(folder / name) for name in s.file_names[:3]]
  score.main(["--workdir", str(workdir), "--no-progress", *files])
  printed = capsys.readouterr().out
  for name, expected in zip(s.file_names[:3], s.scores[:3]):
    line = next(line for line in printed.splitlines() if name in line)
    assert float(line.split()[3]) == pytest.approx(expected, abs=2e-6)


def test_scoring_any_rate_and_channel_count(trained, data, tmp_path):
  import soundfile

  _, workdir, _, evaluation, _ = trained
  s = evaluation.sections[0]
  wave, rate = soundfile.read(next(data.rglob(s.file_names[0])))
  stereo = tmp_path / s.machine / "test" / s.file_names[0]
  stereo.parent.mkdir(parents=True)
  soundfile.write(stereo, np.stack([wave, wave], axis=1)[::2], rate // 2)  # 8 kHz stereo
  scores, decisions = score.score_recordings(workdir, score.recordings([stereo]), progress=False)
  assert scores.shape == (1,) and np.isfinite(scores[0]) and decisions[0] in (0, 1)


def test_scoring_a_folder_scores_the_audio_files_below_it(trained, data, tmp_path):
  """A nested folder mixed with notes, tables and macOS metadata files: every .wav/.flac below it is
  scored, each exactly as when scored alone."""
  import shutil

  import soundfile

  _, workdir, _, evaluation, _ = trained
  s = evaluation.sections[0]
  source = next(p for p in data.rglob(s.machine) if p.is_dir()) / "test"
  folder = tmp_path / "recordings"
  names = s.file_names[:3]
  clips = [
    folder / s.machine / "test" / names[0],  # <machine>/test/<clip>
    folder / "site_b" / s.machine / names[1],  # <machine>/<clip>, one level deeper
    (folder / s.machine / "test" / names[2]).with_suffix(".flac"),
  ]
  for clip, name in zip(clips, names):
    clip.parent.mkdir(parents=True, exist_ok=True)
    samples, rate = soundfile.read(source / name, dtype="int16")
    soundfile.write(clip, samples, rate, subtype="PCM_16")
  (folder / "README").write_text("fan recordings, May")
  (folder / "notes.txt").write_text("mic 2 was loose")
  (folder / s.machine / "scores.csv").write_text("file,score\n")
  shutil.copy(source / names[0], folder / s.machine / "test" / f"._{names[0]}")  # hidden: not a recording
  out = tmp_path / "scores.csv"
  score.main(["--workdir", str(workdir), "--no-progress", "--out", str(out), str(folder)])
  rows = read_csv(out)[1:]
  assert [row[0] for row in rows] == list(map(str, sorted(clips)))
  for path, machine, section, value, _ in rows:
    alone, _ = score.score_recordings(workdir, score.recordings([path]), progress=False)
    assert (machine, section) == (s.machine, s.section)
    assert float(value) == pytest.approx(alone[0], abs=1e-6)


def test_unknown_machine_and_missing_run_are_clear_errors(trained, tmp_path):
  _, workdir, _, evaluation, _ = trained
  clip = next(pathlib.Path(p) for p in pathlib.Path(workdir).parent.parent.rglob("*.wav"))
  with pytest.raises(errors.DataError, match="no centres for nosuchmachine__section_00"):
    score.score_recordings(workdir, score.recordings([clip], machine="nosuchmachine", section="0"), progress=False)
  with pytest.raises(errors.DataError, match="run `python run_eval.py"):
    score.score_recordings(tmp_path, score.recordings([clip], section="0"), progress=False)


def test_checkpoint_of_another_config_is_refused(trained):
  config, workdir, roots, *_ = trained
  changed = tiny_config(**{"loss.weight_decay": 1e-3})
  changed.data.cache_dir = config.data.cache_dir
  with pytest.raises(checkpoint.CheckpointMismatchError, match=r"loss.weight_decay: checkpoint 1e-05 vs now 0.001"):
    train.train(configuration.apply_command_line(changed, data_dirs=roots), workdir, progress=False)


def test_runs_saved_before_a_setting_existed_read_as_they_were_trained(tmp_path):
  """Older runs have no data.class_table, model.matmul_precision or train.drop_remainder: they
  trained on the training keys, at JAX's default precision, dropping partial batches. They
  evaluate that way; resuming one with today's defaults names the differences."""
  config = tiny_config()
  saved = configuration.to_dict(config)
  for name in checkpoint.ADDED_SETTINGS:
    section, field = name.split(".")
    del saved[section][field]
  files.write_json(tmp_path / "config.json", saved)
  read = checkpoint.read_config(tmp_path)
  assert (read["data"]["class_table"], read["model"]["matmul_precision"], read["train"]["drop_remainder"]) == (
    "training",
    "default",
    True,
  )
  with pytest.raises(
    checkpoint.CheckpointMismatchError,
    match="data.class_table: checkpoint 'training' vs now 'reference'.*model.matmul_precision",
  ):
    checkpoint.check_metadata(tmp_path, config, None)


def test_checkpoint_of_other_classes_is_refused(trained, data):
  config, workdir, *_ = trained
  with pytest.raises(checkpoint.CheckpointMismatchError, match="training classes"):
    train.train(configuration.apply_command_line(config, data_dirs=[str(data / "dev_data")]), workdir, progress=False)


def test_a_set_smaller_than_a_batch_trains_as_one_batch_of_it(data, tmp_path):
  """48 clips at batch 64: one step per epoch, padded to 64, the same training as at batch 48:
  every logged loss and scale, and the parameters, as closely as 8 devices follow 1
  (tests/test_train.py; measured 7e-6 of the parameters' norm after the 2 steps). Adam eps
  1e-3 as there: a gradient that is zero in exact arithmetic would otherwise turn float noise
  into a +-lr step."""
  roots = [str(data / "dev_data"), str(data / "eval_data")]
  params, logs = {}, {}
  for batch_size in (64, 48):
    config = tiny_config(**{"train.batch_size": batch_size, "train.epochs": 2, "optim.eps": 1e-3})
    config.data.cache_dir = str(tmp_path / "cache")
    workdir = tmp_path / f"batch_{batch_size}"
    state = train.train(configuration.apply_command_line(config, data_dirs=roots), workdir, progress=False)
    params[batch_size] = np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(state.params))])
    logs[batch_size] = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert checkpoint.latest_step(workdir) == 2 and [r["epoch"] for r in logs[batch_size]] == [1, 2]
  for padded, unpadded in zip(logs[64], logs[48]):
    for name in padded:
      if not name.startswith("accuracy/"):
        assert padded[name] == pytest.approx(unpadded[name], rel=1e-4, abs=1e-7), (padded["step"], name)
  assert np.linalg.norm(params[64] - params[48]) <= 1e-4 * np.linalg.norm(params[48])
  with pytest.raises(ValueError, match="48 training clips are fewer than one batch of 64 and train.drop_remainder"):
    config = tiny_config(**{"train.batch_size": 64, "train.drop_remainder": True})
    config.data.cache_dir = str(tmp_path / "cache")
    train.train(configuration.apply_command_line(config, data_dirs=roots), tmp_path / "dropped", progress=False)


def run_train_command(workdir, data, *extra, env=None):
  """Batch 10 on the 24 development training clips: every epoch ends with a partial batch of 4."""
  overrides = {**OVERRIDES, "train.batch_size": 10}
  command = [
    sys.executable,
    str(REPO / "run_train.py"),
    "--dataset=synthetic",
    f"--workdir={workdir}",
    f"--data_dir={data / 'dev_data'}",
    "--noprogress",
    *[f"--config.{k}={v}" for k, v in overrides.items()],
    "--config.train.epochs=2",
    "--config.train.checkpoint_every_steps=1",
    *extra,
  ]
  return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def subprocess_env(tmp_path, devices=1):
  env = dict(
    os.environ,
    JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PLATFORMS="cpu",
  )
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
  return env


def test_killed_training_resumes_to_the_same_parameters(data, tmp_path):
  env = subprocess_env(tmp_path)
  cache = f"--config.data.cache_dir={tmp_path / 'cache'}"
  reference = run_train_command(tmp_path / "whole", data, cache, env=env)
  assert reference.wait(timeout=600) == 0, reference.stdout.read()
  interrupted = run_train_command(tmp_path / "killed", data, cache, env=env)
  checkpoints = tmp_path / "killed" / "checkpoints"
  deadline = time.time() + 600
  while not (checkpoints / "2").is_dir() and interrupted.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  interrupted.send_signal(signal.SIGKILL)
  interrupted.wait()
  killed_at = checkpoint.latest_step(tmp_path / "killed")
  assert killed_at is not None and killed_at < 6, "the run finished before it could be killed"
  resumed = run_train_command(tmp_path / "killed", data, cache, env=env)
  assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
  step_a, params_a = final_params(tmp_path / "whole")
  step_b, params_b = final_params(tmp_path / "killed")
  assert step_a == step_b == 6  # ceil(24 development training clips / 10), two epochs
  for a, b in zip(params_a, params_b):
    np.testing.assert_array_equal(a, b)
  lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
  assert [int(line.split('"step": ')[1].split(",")[0]) for line in lines] == list(range(1, 7))


def test_two_processes_train_what_one_process_trains(data, tmp_path):
  """jax.distributed on localhost: 2 processes x 1 CPU device = 1 process x 2 devices, the
  partial batch included (process 1 reads only padding there)."""
  env = subprocess_env(tmp_path)
  cache = f"--config.data.cache_dir={tmp_path / 'cache'}"
  port = 20000 + os.getpid() % 20000
  processes = [
    run_train_command(
      tmp_path / "two",
      data,
      cache,
      "--config.train.epochs=1",
      f"--coordinator_address=127.0.0.1:{port}",
      "--num_processes=2",
      f"--process_id={i}",
      env=env,
    )
    for i in range(2)
  ]
  single = run_train_command(
    tmp_path / "one", data, cache, "--config.train.epochs=1", env=subprocess_env(tmp_path, devices=2)
  )
  for process in processes + [single]:
    assert process.wait(timeout=900) == 0, process.stdout.read()
  _, params_two = final_params(tmp_path / "two")
  _, params_one = final_params(tmp_path / "one")
  for a, b in zip(params_two, params_one):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def final_params(workdir):
  member = embedding.load_member(workdir, checkpoint.read_classes(workdir))
  return member.step, jax.tree.leaves(jax.device_get(member.variables))
