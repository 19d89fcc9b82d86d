"""Loading gives float32 mono at 16 kHz; tiling matches the reference; bad audio is a clear error."""

import csv
import os
import re
import warnings

import numpy as np
import pytest
import soundfile
from audio_files import write_audio

from featex_jax.data import audio
from featex_jax.data import layout
from featex_jax.data.errors import DataError
from featex_jax.data.errors import SkippedClipsWarning

CLIP_SAMPLES = 288000


def manifest(dcase_sample):
  with open(dcase_sample / "manifest.csv", newline="") as f:
    return list(csv.DictReader(f))


def test_real_clips_load_as_16khz_mono_float32(dcase_sample):
  for row in manifest(dcase_sample):
    path = dcase_sample / row["relative_path"]
    wav = audio.load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) == round(float(row["duration_s"]) * 16000), row["relative_path"]
    np.testing.assert_array_equal(wav, soundfile.read(path, dtype="int16")[0] / np.float32(32768))
    header = audio.read_header(path)
    assert (header.frames, header.sample_rate, header.channels) == (
      len(wav),
      int(row["sample_rate"]),
      int(row["channels"]),
    )


def tile_reference(wav, length, offset):
  """Straightforward NumPy: read the clip cyclically from `offset`."""
  return wav[(offset + np.arange(length)) % len(wav)]


def test_fit_length_of_real_clips(dcase_sample):
  rng = np.random.default_rng(0)
  for row in manifest(dcase_sample)[::6]:
    wav = audio.load_audio(dcase_sample / row["relative_path"])
    top = audio.max_offset(len(wav), CLIP_SAMPLES)
    assert top == -(-CLIP_SAMPLES // len(wav)) * len(wav) - CLIP_SAMPLES
    for offset in (0, top, audio.random_offset(rng, len(wav), CLIP_SAMPLES)):
      cut = audio.fit_length(wav, CLIP_SAMPLES, offset)
      assert cut.shape == (CLIP_SAMPLES,) and cut.dtype == np.float32
      np.testing.assert_array_equal(cut, tile_reference(wav, CLIP_SAMPLES, offset))


@pytest.mark.parametrize("n", [1, 7, 1000, 287999, CLIP_SAMPLES, 300000])
def test_fit_length_any_clip_length(n):
  rng = np.random.default_rng(n)
  wav = rng.standard_normal(n).astype(np.float32)
  for _ in range(5):
    offset = audio.random_offset(rng, n, CLIP_SAMPLES)
    assert 0 <= offset <= audio.max_offset(n, CLIP_SAMPLES)
    np.testing.assert_array_equal(
      audio.fit_length(wav, CLIP_SAMPLES, offset), tile_reference(wav, CLIP_SAMPLES, offset)
    )
  with pytest.raises(ValueError, match="offset"):
    audio.fit_length(wav, CLIP_SAMPLES, audio.max_offset(n, CLIP_SAMPLES) + 1)


def test_random_offset_covers_the_reference_range():
  # The reference: np.random.randint(0, reps * n - length + 1) with reps = ceil(length / n).
  rng = np.random.default_rng(0)
  draws = {audio.random_offset(rng, 5, 12) for _ in range(400)}  # reps 3: offsets 0..3
  assert draws == {0, 1, 2, 3}
  assert {audio.random_offset(rng, 12, 12) for _ in range(20)} == {0}


def test_multichannel_is_averaged(tmp_path):
  rng = np.random.default_rng(0)
  stereo = 0.3 * rng.standard_normal((1600, 2))
  path = write_audio(tmp_path / "stereo.wav", stereo)
  stored = soundfile.read(path)[0]
  np.testing.assert_array_equal(audio.load_audio(path), stored.mean(axis=1).astype(np.float32))
  assert audio.read_header(path).channels == 2


@pytest.mark.parametrize("rate", [44100, 48000, 22050])
def test_other_rates_are_resampled(tmp_path, rate):
  seconds, frequency = 1.0, 1000.0
  t = np.arange(int(rate * seconds)) / rate
  path = write_audio(tmp_path / f"tone_{rate}.wav", 0.5 * np.sin(2 * np.pi * frequency * t), rate, "FLOAT")
  wav = audio.load_audio(path)
  assert wav.dtype == np.float32 and len(wav) == 16000
  expected = 0.5 * np.sin(2 * np.pi * frequency * np.arange(16000) / 16000)
  np.testing.assert_allclose(wav[200:-200], expected[200:-200], atol=2e-3)


def test_resampling_equals_librosa_soxr_hq():
  import librosa  # seconds to import; the loader itself calls soxr directly

  rng = np.random.default_rng(0)
  for rate in (44100, 22050, 8000):
    wav = rng.standard_normal(rate + 123)
    np.testing.assert_array_equal(
      audio.resample(wav, rate, 16000), librosa.resample(wav, orig_sr=rate, target_sr=16000, res_type="soxr_hq")
    )


def test_flac_reads_like_wav(tmp_path):
  samples = (3000 * np.random.default_rng(1).standard_normal(3000)).astype(np.int16)
  wav_path = write_audio(tmp_path / "a.wav", samples)
  flac_path = write_audio(tmp_path / "a.flac", samples)
  np.testing.assert_array_equal(audio.load_audio(flac_path), audio.load_audio(wav_path))


def bad_files(folder):
  """{problem the error must name: path} for every kind of bad audio."""
  folder.mkdir(exist_ok=True)
  good = write_audio(folder / "good.wav", 0.1 * np.random.default_rng(0).standard_normal(4000))
  data = good.read_bytes()
  files = {
    "empty file": folder / "empty.wav",
    "cannot read audio": folder / "header.wav",
    "cannot read audio ": folder / "garbage.wav",
    "truncated file": folder / "truncated.wav",
    "cannot decode audio": folder / "truncated.flac",
    "no samples": folder / "zero_frames.wav",
    "NaN or Inf": folder / "nan.wav",
    "NaN or Inf ": folder / "inf.wav",
    "cannot read audio  ": folder / "no.wav",
    "silent clip": folder / "silent.wav",
  }
  files["empty file"].write_bytes(b"")
  files["cannot read audio"].write_bytes(data[:30])  # cut inside the header
  files["cannot read audio "].write_bytes(np.random.default_rng(0).bytes(2000))
  files["truncated file"].write_bytes(data[: len(data) // 2])
  flac = write_audio(folder / "full.flac", 0.1 * np.random.default_rng(0).standard_normal(40000)).read_bytes()
  files["cannot decode audio"].write_bytes(flac[: len(flac) // 2])  # libsndfile: "flac decoder lost sync"
  write_audio(files["no samples"], np.zeros(0))
  write_audio(files["NaN or Inf"], np.array([0.1, np.nan, 0.2] * 100), subtype="FLOAT")
  write_audio(files["NaN or Inf "], np.array([0.1, np.inf, 0.2] * 100), subtype="FLOAT")
  write_audio(files["silent clip"], np.zeros(1600))  # all zero: what a failed copy into a preallocated file leaves
  return files


def test_every_bad_file_is_a_clear_error(tmp_path):
  for problem, path in bad_files(tmp_path).items():
    with pytest.raises(DataError, match=f"^{path}: {problem.strip()}"):
      audio.load_audio(path)


def clips_for(paths):
  return [
    layout.Clip(
      path=str(p),
      file_name=os.path.basename(p),
      machine="fan",
      section="00",
      domain="source",
      split="train",
      label="normal",
      attributes="",
      root=str(os.path.dirname(p)),
    )
    for p in paths
  ]


def test_validate_clips_lists_every_bad_file_or_skips_them(tmp_path):
  bad = bad_files(tmp_path / "bad")
  good = [write_audio(tmp_path / f"good{i}.wav", seed=i) for i in range(3)]
  clips = clips_for(good[:2] + list(bad.values()) + good[2:])

  with pytest.raises(DataError) as info:
    audio.validate_clips(clips)
  lines = str(info.value).splitlines()
  assert lines[0] == f"{len(bad)} of {len(clips)} clips are unusable (config.data.skip_bad_clips=True skips them):"
  assert [line.split(": ")[0].strip() for line in lines[1:]] == list(map(str, bad.values()))  # in clip order
  assert all(problem.strip() in line for problem, line in zip(bad, lines[1:]))

  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    kept = audio.validate_clips(clips, skip_bad=True)
  assert [c.path for c in kept] == list(map(str, good))
  assert len(caught) == 1 and issubclass(caught[0].category, SkippedClipsWarning)
  message = str(caught[0].message)
  assert f"{len(bad)} of {len(clips)} clips are unusable; skipped" in message
  assert all(str(p) in message for p in bad.values())

  assert audio.validate_clips(clips_for(good)) == clips_for(good)
  with pytest.raises(
    DataError, match=f"^1 of 1 clips are unusable: {re.escape(str(bad['NaN or Inf']))}: NaN"
  ):  # one problem, one line
    audio.validate_clips(clips_for([bad["NaN or Inf"]]), skip_bad=True)  # nothing left to skip to
