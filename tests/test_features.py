"""Spectrum and magnitude spectrogram against NumPy, on random and real clips, and the Keras reference."""

import numpy as np
import pytest
import soundfile

from featex_jax import features

REAL_CLIP = "ToyCar/train/section_00_source_train_normal_0362_car_C2_spd_31V_mic_1.wav"


def numpy_stft_magnitude(waveform, frame_length, hop_length):
  """Frame by frame, float64: window k of a periodic Hann is 0.5 - 0.5 cos(2 pi k / N)."""
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) / frame_length)
  starts = range(0, len(waveform) - frame_length + 1, hop_length)
  return np.stack([np.abs(np.fft.rfft(window * waveform[s : s + frame_length].astype(np.float64))) for s in starts])


def relative_error(actual, expected):
  return np.max(np.abs(np.asarray(actual, np.float64) - expected)) / np.max(np.abs(expected))


@pytest.fixture(scope="module")
def real_clip(dcase_sample):
  waveform, sample_rate = soundfile.read(dcase_sample / REAL_CLIP, dtype="float32")
  assert sample_rate == 16000
  return waveform


@pytest.fixture(scope="module")
def random_clips():
  return np.random.default_rng(0).normal(0, 0.1, (2, 20_000)).astype(np.float32)


def test_periodic_hann_is_the_symmetric_window_one_longer_without_its_last_sample():
  np.testing.assert_allclose(features.periodic_hann(1024), np.hanning(1025)[:-1], atol=5e-7)  # float32 cos


def test_frames_are_consecutive_hops_without_padding():
  x = np.arange(2 * 5000, dtype=np.float32).reshape(2, 5000)
  frames = np.asarray(features.frame(x, 1024, 256))
  assert frames.shape == (2, 1 + (5000 - 1024) // 256, 1024)
  np.testing.assert_array_equal(frames[1, 3], x[1, 3 * 256 : 3 * 256 + 1024])
  np.testing.assert_array_equal(frames[0, -1], x[0, 15 * 256 : 15 * 256 + 1024])


@pytest.mark.parametrize("frame_length, hop_length", [(1024, 512), (256, 64)])
def test_spectrogram_matches_a_frame_by_frame_numpy_stft(random_clips, frame_length, hop_length):
  spectrogram = np.asarray(features.magnitude_spectrogram(random_clips, frame_length, hop_length))
  assert spectrogram.dtype == np.float32
  for clip, ours in zip(random_clips, spectrogram):
    expected = numpy_stft_magnitude(clip, frame_length, hop_length)
    assert ours.shape == expected.shape == (1 + (20_000 - frame_length) // hop_length, frame_length // 2 + 1)
    assert relative_error(ours, expected) < 1e-6


def test_spectrogram_of_a_real_clip(real_clip):
  ours = np.asarray(features.magnitude_spectrogram(real_clip[None]))[0]
  expected = numpy_stft_magnitude(real_clip, 1024, 512)
  assert ours.shape == (1 + (192_000 - 1024) // 512, 513)
  assert relative_error(ours, expected) < 1e-6


def test_spectrogram_of_an_18_s_clip_has_561_frames(real_clip):
  clip = np.tile(real_clip, 2)[:288_000]
  assert features.magnitude_spectrogram(clip[None]).shape == (1, 561, 513)


def test_spectrogram_rejects_a_hop_that_does_not_divide_the_frame(random_clips):
  with pytest.raises(ValueError, match="multiple of hop_length"):
    features.magnitude_spectrogram(random_clips, 1024, 300)


@pytest.mark.parametrize("n_bins", [None, 1000])
def test_spectrum_is_the_first_bins_of_the_full_fft(random_clips, n_bins):
  ours = np.asarray(features.spectrum(random_clips, n_bins))
  expected = np.abs(np.fft.fft(random_clips.astype(np.float64), axis=-1))[:, : n_bins or 10_000]
  assert ours.shape == expected.shape and ours.dtype == np.float32
  assert relative_error(ours, expected) < 1e-6


def test_spectrum_of_a_real_clip(real_clip):
  ours = np.asarray(features.spectrum(real_clip[None]))[0]
  expected = np.abs(np.fft.rfft(real_clip.astype(np.float64)))[:96_000]
  assert relative_error(ours, expected) < 1e-6


def test_spectrum_rejects_more_bins_than_the_rfft_has(random_clips):
  with pytest.raises(ValueError, match="n_bins"):
    features.spectrum(random_clips, 10_002)


def test_features_match_the_keras_reference(golden):
  """tf.signal.fft / tf.signal.stft outputs of the authors' model (reference noise: ~1e-7)."""
  assert relative_error(features.spectrum(golden["x"]), golden["t/fft_mag"]) < 1e-6
  spectrogram = features.magnitude_spectrogram(golden["x"][:1])
  assert relative_error(spectrogram, golden["t/spec"][..., 0]) < 1e-6
