"""The decoded-audio cache, the data order, the cut offsets and the on-device cut."""

import concurrent.futures
import os

import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from featex_jax import input_pipeline
from featex_jax import tiling
from featex_jax.data import audio
from featex_jax.data import layout


def write_clips(folder, lengths, seed=0):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  paths = []
  for i, n in enumerate(lengths):
    path = folder / f"clip_{i}.wav"
    soundfile.write(path, (rng.standard_normal(n) * 3000).astype(np.int16), 16000, subtype="PCM_16")
    paths.append(str(path))
  return paths


def test_cache_returns_exactly_what_soundfile_reads(tmp_path):
  paths = write_clips(tmp_path / "audio", [16000, 9000, 20000])
  cache = input_pipeline.open_cache(paths, tmp_path / "cache", progress=False)
  assert cache.dtype == np.int16 and cache.max_length == 20000
  for i, path in enumerate(paths):
    np.testing.assert_array_equal(cache.read(i), soundfile.read(path, dtype="int16")[0])
    np.testing.assert_array_equal(cache.read(i) / 32768.0, audio.load_audio(path))


def test_cache_is_rebuilt_when_a_file_changes(tmp_path):
  paths = write_clips(tmp_path / "audio", [8000, 8000])
  first = input_pipeline.open_cache(paths, tmp_path / "cache", progress=False)
  write_clips(tmp_path / "audio", [8000, 12000], seed=1)
  os.utime(paths[1], ns=(1, 1))
  second = input_pipeline.open_cache(paths, tmp_path / "cache", progress=False)
  assert second.directory != first.directory and second.lengths[1] == 12000


def test_concurrent_builds_of_one_cache_agree(tmp_path):
  """Several hosts on shared storage build the same cache at once: one wins, none fails."""
  paths = write_clips(tmp_path / "audio", [8000] * 6)
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    caches = list(pool.map(lambda _: input_pipeline.open_cache(paths, tmp_path / "cache", progress=False), range(4)))
  assert len({c.directory for c in caches}) == 1
  assert [p.name for p in (tmp_path / "cache").iterdir()] == [caches[0].directory.name]


def write_bad_clips(folder):
  """A NaN clip, a silent clip, an empty file and a non-audio file named .wav."""
  folder.mkdir(parents=True, exist_ok=True)
  soundfile.write(folder / "nan.wav", np.array([0.1, np.nan] * 4000), 16000, subtype="FLOAT")
  soundfile.write(folder / "silent.wav", np.zeros(8000, np.int16), 16000, subtype="PCM_16")
  (folder / "empty.wav").write_bytes(b"")
  (folder / "notes.wav").write_text("not audio")
  return {
    str(folder / name): problem
    for name, problem in (
      ("nan.wav", "NaN or Inf samples"),
      ("silent.wav", "silent clip"),
      ("empty.wav", "empty file"),
      ("notes.wav", "cannot read audio"),
    )
  }


def test_cache_stores_the_good_clips_and_lists_every_bad_one(tmp_path, monkeypatch):
  good = write_clips(tmp_path / "audio", [8000, 9000, 10000])
  bad = write_bad_clips(tmp_path / "bad")
  paths = [good[0], *list(bad)[:2], good[1], *list(bad)[2:], good[2]]
  cache = input_pipeline.open_cache(paths, tmp_path / "cache", progress=False)
  assert cache.paths == tuple(good) and cache.dtype == np.float32  # the NaN file's header says FLOAT
  for i, path in enumerate(good):
    np.testing.assert_array_equal(cache.read(i), audio.load_audio(path))
  assert list(cache.problems) == [p for p in paths if p in bad]
  assert all(message.startswith(f"{path}: {bad[path]}") for path, message in cache.problems.items())
  monkeypatch.setattr(audio, "try_load_audio", lambda *_: pytest.fail("an existing cache decoded again"))
  assert input_pipeline.open_cache(paths, tmp_path / "cache", progress=False).problems == cache.problems


def test_clip_set_each_refuses_or_skips_the_bad_clips_of_every_list(tmp_path):
  from configs import synthetic as synthetic_config
  from featex_jax import clip_sets
  from featex_jax.data import errors

  good = write_clips(tmp_path / "audio", [8000, 9000])
  bad = write_bad_clips(tmp_path / "bad")
  clip = lambda path: layout.Clip(path, os.path.basename(path), "fan", "00", "source", "train", "normal", "", "")
  lists = [[clip(good[0]), *map(clip, list(bad)[:2])], [*map(clip, list(bad)[2:]), clip(good[1])]]
  config = synthetic_config.get_config()
  config.data.cache_dir = str(tmp_path / "cache")
  with pytest.raises(errors.DataError) as info:
    clip_sets.clip_set_each(lists, config, tmp_path / "run", progress=False)
  assert str(info.value).startswith("4 of 6 clips are unusable") and all(path in str(info.value) for path in bad)
  config.data.skip_bad_clips = True
  with pytest.warns(errors.SkippedClipsWarning, match="4 of 6 clips are unusable; skipped") as caught:
    train_set, test_set = clip_sets.clip_set_each(lists, config, tmp_path / "run", progress=False)
  assert len(caught) == 1
  assert [c.path for c in train_set.clips] == list(train_set.cache.paths) == good[:1]
  assert [c.path for c in test_set.clips] == list(test_set.cache.paths) == good[1:]


def test_offsets_are_per_clip_and_in_the_reference_range():
  keys = [f"fan/clip_{i}.wav" for i in range(200)]
  lengths = np.random.default_rng(0).integers(1000, 400000, 200)
  fixed = input_pipeline.clip_offsets(keys, lengths, 288000, seed=3)
  assert np.all(fixed >= 0) and np.all([o <= audio.max_offset(n, 288000) for o, n in zip(fixed, lengths)])
  np.testing.assert_array_equal(input_pipeline.clip_offsets(keys[::-1], lengths[::-1], 288000, seed=3), fixed[::-1])
  assert not np.array_equal(input_pipeline.clip_offsets(keys, lengths, 288000, seed=3, epoch=0), fixed)


def test_every_clip_is_in_one_batch_of_each_epoch():
  """As Keras' fit: ceil(n / batch) steps, the last one padded; a set smaller than a batch is one step."""
  for n_clips, batch_size in ((100, 8), (48, 64), (64, 64), (65, 64)):
    batches = list(input_pipeline.train_index_batches(n_clips, batch_size, seed=1, epoch=2))
    assert len(batches) == input_pipeline.steps_per_epoch(n_clips, batch_size) == -(-n_clips // batch_size)
    flat = np.concatenate(batches)
    assert len(flat) == len(batches) * batch_size
    np.testing.assert_array_equal(np.sort(flat[flat != input_pipeline.PADDING]), np.arange(n_clips))
    np.testing.assert_array_equal(flat[n_clips:], input_pipeline.PADDING)  # the padding is at the end
    np.testing.assert_array_equal(flat[:n_clips], input_pipeline.epoch_order(n_clips, 1, 2))
  dropped = list(input_pipeline.train_index_batches(100, 8, seed=1, epoch=2, drop_remainder=True))
  assert len(dropped) == input_pipeline.steps_per_epoch(100, 8, drop_remainder=True) == 12
  assert input_pipeline.PADDING not in np.concatenate(dropped)
  assert input_pipeline.steps_per_epoch(48, 64, drop_remainder=True) == 0


@pytest.mark.parametrize("n_processes", [2, 4])
def test_processes_read_equal_shares_of_every_global_batch(n_processes):
  """Each process reads batch / processes rows of every step, the partial last batch too (where
  a process may get only padding); together they read the global batch."""
  whole = list(input_pipeline.train_index_batches(100, 8, seed=1, epoch=2))
  shares = [
    list(input_pipeline.train_index_batches(100, 8, seed=1, epoch=2, process_index=p, process_count=n_processes))
    for p in range(n_processes)
  ]
  assert len(whole) == 13 and all(len(share) == 13 for share in shares)
  for step, batch in enumerate(whole):
    assert all(len(share[step]) == 8 // n_processes for share in shares)
    np.testing.assert_array_equal(np.concatenate([share[step] for share in shares]), batch)
  assert list(shares[-1][-1]) == [input_pipeline.PADDING] * (8 // n_processes)  # 4 real clips in the last batch
  resumed = list(input_pipeline.train_index_batches(100, 8, seed=1, epoch=2, start_step=5))
  np.testing.assert_array_equal(np.stack(resumed), np.stack(whole[5:]))


def test_padding_rows_are_read_as_masked_silence(tmp_path):
  paths = write_clips(tmp_path / "audio", [8000, 12000, 9000])
  cache = input_pipeline.open_cache(paths, tmp_path / "cache", progress=False)
  reader = input_pipeline.BatchReader(cache, [4, 5, 6])
  try:
    padding = input_pipeline.PADDING
    (batch,) = reader.batches([np.array([2, padding, 0, padding])], [np.array([7, 99, 3, 99])])
  finally:
    reader.close()
  np.testing.assert_array_equal(batch["mask"], [True, False, True, False])
  np.testing.assert_array_equal(batch["labels"], [6, 0, 4, 0])
  np.testing.assert_array_equal(batch["lengths"], [9000, 1, 8000, 1])
  np.testing.assert_array_equal(batch["offsets"], [7, 0, 3, 0])
  np.testing.assert_array_equal(batch["audio"][0, :9000], cache.read(2))
  assert not batch["audio"][[1, 3]].any()


def test_device_cut_equals_the_reference_tiling():
  rng = np.random.default_rng(0)
  lengths = np.array([5000, 12345, 30000])
  stored = np.zeros((3, 30000), np.int16)
  for row, n in enumerate(lengths):
    stored[row, :n] = rng.integers(-30000, 30000, n)
  offsets = np.array([audio.random_offset(rng, int(n), 40000) for n in lengths])
  cut = np.asarray(tiling.tile_and_cut(jnp.asarray(stored), jnp.asarray(lengths), jnp.asarray(offsets), 40000))
  for row, n in enumerate(lengths):
    expected = audio.fit_length(stored[row, :n].astype(np.float32) / 32768.0, 40000, int(offsets[row]))
    np.testing.assert_array_equal(cut[row], expected)
