"""Reading a clip as the model sees it: float32 mono at 16 kHz, then tiled and cut to a fixed length.

Decoding (`load_audio`) and cutting (`fit_length`) are separate so that a pipeline can decode
each clip once and cut it either once (the reference: a random offset drawn at load time) or
afresh every epoch (`random_offset` per epoch).
"""

import concurrent.futures
import dataclasses
import os
import struct
import warnings

import numpy as np
import soundfile
import soxr

from featex_jax.data.errors import DataError
from featex_jax.data.errors import SkippedClipsWarning
from featex_jax.errors import listing


@dataclasses.dataclass(frozen=True)
class Header:
  frames: int
  sample_rate: int
  channels: int
  format: str  # 'WAV', 'FLAC', ...
  subtype: str  # 'PCM_16', 'FLOAT', ...

  @property
  def duration(self):
    return self.frames / self.sample_rate


def _wav_data_shortfall(path):
  """Bytes missing from a RIFF/WAVE file's data chunk (0 when complete or not a plain RIFF file).

  libsndfile silently reads what is there when a WAV file is cut short, so a clip truncated by
  an interrupted download or copy would pass unnoticed without this check.
  """
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    riff = f.read(12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
      return 0
    while True:
      chunk = f.read(8)
      if len(chunk) < 8:
        return 0
      chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
      if chunk_id == b"data":
        return max(0, chunk_size - (size - f.tell())) if chunk_size != 0xFFFFFFFF else 0
      f.seek(chunk_size + (chunk_size & 1), os.SEEK_CUR)


def read_header(path):
  """The clip's header (fast: no decoding); DataError when the file is empty, unreadable or truncated."""
  path = os.fspath(path)
  try:
    if os.path.getsize(path) == 0:
      raise DataError(f"{path}: empty file (0 bytes)")
    info = soundfile.info(path)
    shortfall = _wav_data_shortfall(path)
  except DataError:
    raise
  except (soundfile.SoundFileError, OSError) as e:
    raise DataError(f"{path}: cannot read audio ({e})") from None
  if shortfall:
    raise DataError(f"{path}: truncated file, {shortfall} bytes of audio data missing")
  if info.frames <= 0:
    raise DataError(f"{path}: no samples")
  return Header(int(info.frames), int(info.samplerate), int(info.channels), info.format, info.subtype)


def load_audio(path, sample_rate=16000):
  """float32 mono samples at `sample_rate`: channels averaged (librosa.to_mono), other rates resampled.

  Computed in float64 and rounded once to float32, as the reference's soundfile read then cast.
  DataError for an unreadable, truncated or empty file, for NaN/Inf samples and for a silent
  clip (every sample zero: what a failed copy into a preallocated file or a dead microphone
  leaves, never a recording to learn from).
  """
  path = os.fspath(path)
  header = read_header(path)
  try:
    data, rate = soundfile.read(path, dtype="float64", always_2d=True)
  except (soundfile.SoundFileError, OSError) as e:
    raise DataError(f"{path}: cannot decode audio ({e})") from None
  if data.shape[0] != header.frames:
    raise DataError(f"{path}: truncated file, header says {header.frames} frames, decoded {data.shape[0]}")
  bad = int(np.count_nonzero(~np.isfinite(data)))
  if bad:
    raise DataError(f"{path}: NaN or Inf samples ({bad} of {data.size})")
  wav = data.mean(axis=1)
  if not wav.any():
    raise DataError(f"{path}: silent clip, every sample is zero")
  if rate != sample_rate:
    wav = resample(wav, rate, sample_rate)
  return wav.astype(np.float32)


def try_load_audio(path, sample_rate=16000):
  """(samples, None) for a usable clip, (None, what is wrong with it) for a bad one, so that a
  data set's problems are collected in one pass rather than stopping at the first."""
  try:
    return load_audio(path, sample_rate), None
  except DataError as e:
    return None, str(e)


def resample(wav, rate, target_rate):
  """librosa.resample(wav, orig_sr=rate, target_sr=target_rate, res_type='soxr_hq'), without librosa's
  seconds-long import: soxr's high-quality resampler, padded or cut to ceil(n * target_rate / rate)."""
  resampled = soxr.resample(wav, rate, target_rate, quality="HQ")
  length = int(np.ceil(len(wav) * (float(target_rate) / rate)))
  return np.pad(resampled, (0, max(0, length - len(resampled))))[:length]


def max_offset(n_samples, length):
  """Largest cut offset into the clip tiled ceil(length / n_samples) times."""
  if n_samples <= 0:
    raise ValueError(f"a clip needs at least one sample, got {n_samples}")
  return -(-length // n_samples) * n_samples - length


def random_offset(rng, n_samples, length):
  """A cut offset uniform over [0, max_offset] (inclusive), as the reference's adjust_size draws it."""
  return int(rng.integers(0, max_offset(n_samples, length) + 1))


def fit_length(wav, length, offset):
  """The clip tiled ceil(length / n) times and cut to [offset, offset + length): the reference's adjust_size."""
  if not 0 <= offset <= max_offset(len(wav), length):
    raise ValueError(f"offset {offset} outside [0, {max_offset(len(wav), length)}] for a clip of {len(wav)} samples")
  return np.tile(wav, -(-length // len(wav)))[offset : offset + length]


def validate_clips(clips, skip_bad=False, sample_rate=16000, workers=4, progress=False):
  """The usable clips, in order, after decoding every clip (with a progress bar in clips/s).

  A bad clip (unreadable, empty, truncated, NaN/Inf or silent) raises one DataError listing
  every bad file, or with `skip_bad` is left out (see `usable_clips`).
  """
  import tqdm

  clips = list(clips)
  problems = {}
  with (
    concurrent.futures.ThreadPoolExecutor(workers) as pool,
    tqdm.tqdm(total=len(clips), desc="checking audio", unit="clip", disable=not progress) as bar,
  ):
    for clip, (_, problem) in zip(clips, pool.map(lambda c: try_load_audio(c.path, sample_rate), clips)):
      if problem:
        problems[clip.path] = problem
      bar.update()
  return usable_clips(clips, problems, skip_bad)


def usable_clips(clips, problems, skip_bad=False):
  """`clips` less those whose path is in `problems` ({path: what is wrong}).

  Any problem raises one DataError listing every one; with `skip_bad` the bad clips are left
  out instead, with one SkippedClipsWarning listing them (an error still when none is left).
  """
  clips = list(clips)
  bad = [problems[c.path] for c in clips if c.path in problems]
  if not bad:
    return clips
  kept = [c for c in clips if c.path not in problems]
  headline = f"{len(bad)} of {len(clips)} clips are unusable"
  if not skip_bad or not kept:
    hint = " (config.data.skip_bad_clips=True skips them)" if kept else ""
    raise DataError(listing(headline + hint, bad, limit=len(bad)))
  warnings.warn(listing(headline + "; skipped", bad, limit=len(bad)), SkippedClipsWarning, stacklevel=2)
  return kept
