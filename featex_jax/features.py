"""The two input representations of the network, computed from waveforms in plain JAX.

Both match the reference's TensorFlow front end exactly (docs/method.md, the network):

- `spectrum`: |FFT| of the whole clip, first n//2 bins (TF takes a full complex FFT and
  keeps bins 0..n/2-1; the rfft bins are the same numbers, Nyquist bin dropped).
- `magnitude_spectrogram`: |STFT| as `tf.signal.stft(frame_length, frame_step,
  pad_end=False)` computes it: frames start at 0 and step by the hop with no centring or
  padding (561 frames for 288,000 samples), a periodic Hann window, magnitude of the real
  FFT of the frame (frame_length // 2 + 1 bins), no log, no mel, no scaling.
  `jax.scipy.signal.stft` pads, centres and scales by default, hence this hand-built one.

Features are always computed in float32, whatever dtype the network runs in.
"""

import jax.numpy as jnp
import numpy as np


def periodic_hann(n):
  """Periodic Hann window, 0.5 - 0.5 cos(2 pi k / n): TF's `hann_window(periodic=True)`.

  A NumPy constant (float64 rounded to float32): written in JAX, XLA:CPU fuses the cosine
  into the windowing and evaluates it once per frame sample, 9 M cosines per batch of 16.
  """
  k = np.arange(n)
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)).astype(np.float32)


def frame(waveforms, frame_length, hop_length):
  """[B, n] -> [B, 1 + (n - frame_length) // hop_length, frame_length], no padding.

  With hop dividing the frame (the reference: 1024 / 512), every frame is a run of
  frame_length // hop_length consecutive hop-sized chunks, so the frames are a few
  reshapes and slices of the signal instead of a gather.
  """
  if frame_length % hop_length:
    raise ValueError(f"frame_length {frame_length} must be a multiple of hop_length {hop_length}")
  n = waveforms.shape[-1]
  if n < frame_length:
    raise ValueError(f"waveforms of {n} samples are shorter than one frame of {frame_length}")
  n_frames = 1 + (n - frame_length) // hop_length
  chunks_per_frame = frame_length // hop_length
  n_chunks = n_frames + chunks_per_frame - 1
  chunks = waveforms[..., : n_chunks * hop_length].reshape(*waveforms.shape[:-1], n_chunks, hop_length)
  return jnp.concatenate([chunks[..., i : i + n_frames, :] for i in range(chunks_per_frame)], axis=-1)


def magnitude_spectrogram(waveforms, frame_length=1024, hop_length=512):
  """[B, n] float waveforms -> [B, frames, frame_length // 2 + 1] float32 |STFT|."""
  frames = frame(jnp.asarray(waveforms, jnp.float32), frame_length, hop_length)
  return jnp.abs(jnp.fft.rfft(frames * periodic_hann(frame_length), axis=-1))


def spectrum(waveforms, n_bins=None):
  """[B, n] float waveforms -> [B, n_bins] float32 |FFT|, bins 0..n_bins-1 (default n // 2)."""
  waveforms = jnp.asarray(waveforms, jnp.float32)
  n = waveforms.shape[-1]
  n_bins = n // 2 if n_bins is None else n_bins
  if not 0 < n_bins <= n // 2 + 1:
    raise ValueError(f"n_bins {n_bins} out of range for clips of {n} samples (at most {n // 2 + 1})")
  return jnp.abs(jnp.fft.rfft(waveforms, axis=-1)[..., :n_bins])
