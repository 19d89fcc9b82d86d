"""Fixed-length clips cut on the device from the compact audio the input pipeline sends.

The host sends each clip at its own length (int16 or float32, zero-padded to the longest in
the set) with its true length and an offset; the device tiles and cuts it to the model's
length. Tiling a clip and cutting at `offset` equals reading it cyclically from `offset`,
which is one gather: no 18 s float32 copies cross the host-device link.
"""

import jax.numpy as jnp

INT16_SCALE = 1.0 / 32768.0  # soundfile's float reading of 16-bit PCM


def tile_and_cut(audio, lengths, offsets, clip_samples):
  """[B, L] stored audio -> [B, clip_samples] float32: np.tile(clip)[offset:offset + clip_samples].

  Args:
    audio: int16 (PCM) or float [B, L] clips, each valid up to its length, padded after.
    lengths: int [B] number of valid samples of each clip (> 0).
    offsets: int [B] cut position in the tiled clip, in [0, ceil(n/len)*len - clip_samples].
    clip_samples: output length (288,000 in the reference).
  """
  positions = (offsets[:, None] + jnp.arange(clip_samples)[None, :]) % lengths[:, None]
  waveforms = jnp.take_along_axis(audio, positions, axis=1)
  if audio.dtype == jnp.int16:
    return waveforms.astype(jnp.float32) * INT16_SCALE
  return waveforms.astype(jnp.float32)
