"""Streaming input: decode once into an on-disk cache, then read batches with bounded memory.

The reference loads every clip of every split into RAM as 18 s float32 (over 20 GB for
DCASE2023). Here each clip is decoded once into one flat cache file (int16 when every source
is 16-bit PCM at the target rate, so reading it back is bit-exact; float32 otherwise), keyed
by the file list, sizes and modification times and rebuilt when any of them changes. Batches
are read from it with positioned reads (no memory map, so the resident set stays bounded
whatever the dataset size) by a few threads ahead of the step, and cut to 18 s on the device
(featex_jax.tiling). The shuffle of every epoch and every clip's cut offset are functions of
(seed, epoch, clip), so a resumed run reads exactly what the uninterrupted run would have.
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import zlib

import numpy as np

from featex_jax.data import audio as audio_io
from featex_jax.data.errors import DataError

_INDEX = "index.json"
_SAMPLES = "samples.bin"


@dataclasses.dataclass(frozen=True)
class AudioCache:
  """Decoded clips in one flat file: clip i is samples[starts[i]:starts[i] + lengths[i]].

  `paths` are the usable clips; `problems` ({path: what is wrong}) the ones left out.
  """

  directory: pathlib.Path
  paths: tuple
  starts: np.ndarray
  lengths: np.ndarray
  dtype: np.dtype
  problems: dict

  @property
  def max_length(self):
    return int(self.lengths.max())

  def __len__(self):
    return len(self.paths)

  def read(self, index, out=None):
    """Clip `index` as stored (int16 or float32); into `out[:length]` when given."""
    length, itemsize = int(self.lengths[index]), self.dtype.itemsize
    if out is None:
      out = np.empty(length, self.dtype)
    buffer = memoryview(out[:length]).cast("B")
    with open(self.directory / _SAMPLES, "rb", buffering=0) as f:
      got = os.preadv(f.fileno(), [buffer], int(self.starts[index]) * itemsize)
    if got != length * itemsize:
      raise OSError(f"audio cache {self.directory} is truncated at clip {self.paths[index]}; delete it to rebuild")
    return out[:length]


def cache_key(paths, sample_rate):
  """Changes whenever a file is added, removed, replaced or touched."""
  digest = hashlib.sha256(f"v2 {sample_rate}".encode())
  for path in paths:
    stat = os.stat(path)
    digest.update(f"\n{os.path.abspath(path)} {stat.st_size} {stat.st_mtime_ns}".encode())
  return digest.hexdigest()[:20]


def open_cache(paths, cache_root, sample_rate=16000, workers=4, progress=True):
  """The cache for `paths` under `cache_root`, building it first when missing or stale.

  Bad clips (unreadable, empty, truncated, NaN/Inf, silent) are not stored but listed in its
  `problems`, so the one decoding pass finds every problem of the data set at once.
  """
  paths = tuple(os.fspath(p) for p in paths)
  directory = pathlib.Path(cache_root) / cache_key(paths, sample_rate)
  if not (directory / _INDEX).is_file():
    _build(directory, paths, sample_rate, workers, progress)
  index = json.loads((directory / _INDEX).read_text())
  lengths = np.asarray(index["lengths"], np.int64)
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  return AudioCache(directory, tuple(index["paths"]), starts, lengths, np.dtype(index["dtype"]), index["problems"])


def _is_exact_pcm16(header, sample_rate):
  return header.subtype == "PCM_16" and header.sample_rate == sample_rate and header.channels == 1


def _build(directory, paths, sample_rate, workers, progress):
  """Decode every usable clip in order into a temporary folder, then rename it into place."""
  import tqdm

  directory.parent.mkdir(parents=True, exist_ok=True)
  headers, problems = {}, {}
  for path in paths:
    try:
      headers[path] = audio_io.read_header(path)
    except DataError as e:
      problems[path] = str(e)
  as_int16 = all(_is_exact_pcm16(h, sample_rate) for h in headers.values())
  dtype = np.dtype(np.int16 if as_int16 else np.float32)
  tmp = pathlib.Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
  stored, lengths = [], []
  try:
    with open(tmp / _SAMPLES, "wb") as out, concurrent.futures.ThreadPoolExecutor(workers) as pool:
      bar = tqdm.tqdm(total=len(headers), desc="decoding audio", unit="clip", disable=not progress)

      def store(path, future):
        waveform, problem = future.result()
        if problem:
          problems[path] = problem
        else:
          stored.append(path)
          lengths.append(_append(out, waveform, dtype))
        bar.update()

      # In order; a bounded window of futures keeps memory bounded.
      pending = collections.deque()
      for path in headers:
        pending.append((path, pool.submit(audio_io.try_load_audio, path, sample_rate)))
        if len(pending) > 4 * workers:
          store(*pending.popleft())
      while pending:
        store(*pending.popleft())
      bar.close()
    (tmp / _INDEX).write_text(
      json.dumps(
        {
          "paths": stored,
          "lengths": lengths,
          "dtype": dtype.name,
          "sample_rate": sample_rate,
          "problems": {path: problems[path] for path in paths if path in problems},
        }
      )
    )
    try:
      os.replace(tmp, directory)
    except OSError:
      if not (directory / _INDEX).is_file():
        raise
      shutil.rmtree(tmp)  # another process (another host on shared storage) finished the same cache first
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _append(out, waveform, dtype):
  if dtype == np.int16:
    waveform = np.round(waveform * 32768.0).astype(np.int16)
  out.write(np.ascontiguousarray(waveform, dtype).tobytes())
  return int(waveform.shape[0])


def clip_key(clip):
  """What names a clip for its cut offset: the same file gets the same cut in training,
  evaluation and `featex_jax.score`, whatever else is in the set."""
  return f"{clip.machine}/{clip.file_name}"


def clip_offsets(keys, lengths, clip_samples, seed, epoch=None):
  """Each clip's cut offset, uniform over [0, reps*n - clip_samples] as the reference's adjust_size.

  A function of (seed, epoch, clip key) only. epoch=None gives the fixed offsets the reference
  draws once at load time (training by default, evaluation always); an epoch number gives
  fresh offsets for that epoch.
  """
  stream = 0 if epoch is None else epoch + 1
  offsets = np.empty(len(keys), np.int64)
  for i, (key, n_samples) in enumerate(zip(keys, lengths)):
    rng = np.random.default_rng([seed, stream, zlib.crc32(key.encode())])
    offsets[i] = audio_io.random_offset(rng, int(n_samples), clip_samples)
  return offsets


def epoch_order(n_clips, seed, epoch):
  """The permutation of the training clips for one epoch."""
  return np.random.default_rng([seed, epoch]).permutation(n_clips)


PADDING = -1  # the clip index of a padding row (train_index_batches)


class BatchReader:
  """Reads host batches of stored clips ahead of the consumer with a small thread pool.

  Each batch is a dict of numpy arrays: audio [b, max_length] (zero-padded), lengths [b],
  offsets [b], labels [b], mask [b] (False for PADDING rows: silence of length 1, label 0).
  Memory in flight: `prefetch` batches.
  """

  def __init__(self, cache, labels, prefetch=2, workers=4):
    self.cache, self.labels = cache, np.asarray(labels)
    self.prefetch = max(1, prefetch)
    self.pool = concurrent.futures.ThreadPoolExecutor(workers)

  def _read(self, indices, offsets):
    indices = np.asarray(indices)
    real = indices != PADDING
    audio = np.zeros((len(indices), self.cache.max_length), self.cache.dtype)
    for row in np.flatnonzero(real):
      self.cache.read(indices[row], out=audio[row])
    return {
      "audio": audio,
      "lengths": np.where(real, self.cache.lengths[indices], 1).astype(np.int32),
      "offsets": np.where(real, offsets, 0).astype(np.int32),
      "labels": np.where(real, self.labels[indices], 0).astype(np.int32),
      "mask": real,
    }

  def batches(self, index_batches, offset_batches):
    """Yields the batch of each (indices, offsets) pair, in order, reading ahead."""
    pending = collections.deque()
    for indices, offsets in zip(index_batches, offset_batches):
      pending.append(self.pool.submit(self._read, indices, offsets))
      if len(pending) > self.prefetch:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()

  def close(self):
    self.pool.shutdown(wait=False, cancel_futures=True)


def train_index_batches(
  n_clips, batch_size, seed, epoch, start_step=0, process_index=0, process_count=1, drop_remainder=False
):
  """This process's share of each global batch of one epoch, from `start_step` on.

  As in Keras' fit, the last partial batch is a step too: it is padded at its end with PADDING
  rows to the full global batch before the shares are cut, so every batch has one shape and
  every host and device an equal share (a host may get only padding), and the train step
  leaves the padding out. `drop_remainder` drops the partial batch instead (the shuffle makes
  a different set of clips fall off each epoch).
  """
  order = epoch_order(n_clips, seed, epoch)
  share = batch_size // process_count
  for step in range(start_step, steps_per_epoch(n_clips, batch_size, drop_remainder)):
    global_batch = order[step * batch_size : (step + 1) * batch_size]
    global_batch = np.pad(global_batch, (0, batch_size - len(global_batch)), constant_values=PADDING)
    yield global_batch[process_index * share : (process_index + 1) * share]


def steps_per_epoch(n_clips, batch_size, drop_remainder=False):
  """ceil(n_clips / batch_size) as Keras' fit; floor with drop_remainder."""
  return n_clips // batch_size if drop_remainder else -(-n_clips // batch_size)
