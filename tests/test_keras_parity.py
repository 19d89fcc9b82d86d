"""Weight-level parity with the authors' Keras model (tests/data/keras-reference).

The golden weights are converted, FeatExNet runs them in inference mode under full float32
matmul precision on the golden clips, and every stored stage tensor must agree within 1e-4
of its largest magnitude (the reference's own float32 kernel noise is about 5e-6). Run with
`-s` to see the largest error per tensor.
"""

import re
import shutil

import jax
import numpy as np
import pytest

from featex_jax import checkpoint
from featex_jax import clip_sets
from featex_jax import configuration
from featex_jax import convert_keras
from featex_jax import embedding
from featex_jax.data import classes
from featex_jax.model import FeatExNet

TOLERANCE = 1e-4
HEAD_KEYS = {"classification": "N", "statex": "3N", "featex": "9N"}


@pytest.fixture(scope="module")
def converted(golden, tmp_path_factory):
  """The reference's weights before the heads' call, through the golden-layout .npz reader."""
  path = tmp_path_factory.mktemp("golden") / "weights.npz"
  np.savez(path, **golden_weights(golden))
  return convert_keras.convert(path)


@pytest.fixture(scope="module")
def ours(converted, golden):
  """Our tensors under the golden keys, all clips (the reference stores some for clip 0 only)."""
  variables = {"params": converted["params"], "batch_stats": converted["batch_stats"]}
  apply = jax.jit(lambda v, x: FeatExNet().apply(v, x, train=False, mutable=["intermediates"]))
  with jax.default_matmul_precision("float32"):
    (e1, e2), state = apply(variables, golden["x"])
  tensors = state["intermediates"]
  spectrogram = tensors["spectrogram"]
  block_output = lambda channels: spectrogram[f"stage_{channels}"]["block_2"]["output"][0]
  flat = np.asarray(spectrogram["flat"][0])
  return {
    "t/fft_mag": tensors["fft_magnitude"][0],
    "t/fft_flatten": tensors["spectrum"]["flatten"][0],
    "t/emb_fft": e1,
    "t/spec": tensors["stft_magnitude"][0][..., None],
    "t/spec_bn": spectrogram["normalised"][0][..., None],
    "t/block2_out": block_output(16),
    "t/block3_out": block_output(32),
    "t/block4_out": block_output(64),
    "t/block5_out": block_output(128),
    "t/pool_time": flat.reshape(flat.shape[0], 1, -1, block_output(128).shape[-1]),
    "t/flat": flat,
    "t/emb_mel": e2,
    "t/emb": np.concatenate([e1, e2], axis=-1),
  }


@pytest.mark.parametrize(
  "key",
  [
    "t/fft_mag",
    "t/fft_flatten",
    "t/emb_fft",
    "t/spec",
    "t/spec_bn",
    "t/block2_out",
    "t/block3_out",
    "t/block4_out",
    "t/block5_out",
    "t/pool_time",
    "t/flat",
    "t/emb_mel",
    "t/emb",
  ],
)
def test_stage_tensor_matches_the_reference(ours, golden, key):
  expected = golden[key]
  actual = np.asarray(ours[key])[: expected.shape[0]]
  assert actual.shape == expected.shape
  error = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
  print(f"{key}: largest error {error:.1e} of the largest magnitude")
  assert error < TOLERANCE


def test_heads_and_scales_are_the_reference_centres(converted, golden):
  assert converted["n_classes"] == 4 and converted["n_subclusters"] == 16
  for head, key in HEAD_KEYS.items():
    np.testing.assert_array_equal(converted["heads"][head], golden[f"adacos/{key}/W"])
    assert converted["scales"][head] == golden[f"adacos/{key}/s_before"]
  assert converted["unused"] == []


def test_hdf5_weights_give_the_same_parameters(converted, golden, keras_reference):
  from_h5 = convert_keras.convert(keras_reference / "weights.h5")
  for part in ("params", "batch_stats", "heads"):
    jax.tree.map(np.testing.assert_array_equal, from_h5[part], converted[part])
  # weights.h5 was saved after the heads' training call: it holds the updated scales.
  for head, key in HEAD_KEYS.items():
    assert from_h5["scales"][head] == golden[f"adacos/{key}/s_after"]
  assert from_h5["unused"] == []


def golden_weights(golden):
  return {key: value for key, value in golden.items() if key.startswith("w/")}


def test_layer_names_with_an_offset_map_the_same(converted, golden, tmp_path):
  """A process that built another model first names the layers conv2d_20, dense_26, ..."""
  offsets = {
    "conv1d": 3,
    "conv2d": 20,
    "dense": 26,
    "batch_normalization": 22,
    "squeeze_and_excitation_block": 11,
    "sc_ada_cos": 3,
  }

  def shift(name):
    match = re.fullmatch(r"(\w+?)(?:_(\d+))?", name)
    keras_class, index = match.group(1), int(match.group(2) or 0)
    return f"{keras_class}_{index + offsets[keras_class]}" if keras_class in offsets else name

  renamed = {"/".join(map(shift, key.split("/"))): value for key, value in golden_weights(golden).items()}
  np.savez(tmp_path / "shifted.npz", **renamed)
  shifted = convert_keras.convert(tmp_path / "shifted.npz")
  for part in ("params", "batch_stats", "heads"):
    jax.tree.map(np.testing.assert_array_equal, shifted[part], converted[part])


@pytest.mark.parametrize(
  "edit, message",
  [
    (
      lambda w: w.update({"w/conv2d_5/kernel": w["w/conv2d_5/kernel"].transpose(0, 1, 3, 2)}),
      r"conv2d_5/kernel has shape \(3, 3, 32, 16\), expected \(3, 3, 16, 32\)",
    ),
    (lambda w: w.pop("w/squeeze_and_excitation_block_7/dense_19/kernel"), r"squeeze_and_excitation_block_7 holds"),
    (
      lambda w: [w.pop(k) for k in list(w) if k.startswith("w/batch_normalization_12/")],
      r"21 Keras batch_normalization layers .*the reference model has 22",
    ),
    (lambda w: w.pop("w/sc_ada_cos_2/s12_16"), r"sc_ada_cos_2 has no scale"),
  ],
)
def test_a_weights_file_that_does_not_fit_names_the_layer(golden, tmp_path, edit, message):
  weights = golden_weights(golden)
  edit(weights)
  np.savez(tmp_path / "edited.npz", **weights)
  with pytest.raises(convert_keras.KerasWeightsError, match=message):
    convert_keras.convert(tmp_path / "edited.npz")


def test_unused_weights_are_reported(golden, tmp_path):
  weights = golden_weights(golden)
  weights["w/extra_dense/kernel"] = np.zeros((3, 3), np.float32)
  np.savez(tmp_path / "extra.npz", **weights)
  assert convert_keras.convert(tmp_path / "extra.npz")["unused"] == ["extra_dense/kernel"]


def test_a_file_that_is_not_weights_is_rejected(tmp_path):
  (tmp_path / "notes.txt").write_text("not weights")
  with pytest.raises(convert_keras.KerasWeightsError, match="notes.txt: neither an HDF5"):
    convert_keras.convert(tmp_path / "notes.txt")


def test_converted_weights_evaluate_on_data_whose_reference_table_has_their_classes(
  keras_reference, dcase_sample, tmp_path
):
  """The golden heads have N = 4, as the reference's table of the real valve clips: 2 training
  keys (pat_01 source) + 3 from the development test clips (pat_00 source, pat_02 and pat_03
  target), less the shared one. run_eval's path accepts the converted run with the class table
  given at conversion, or built from the data at evaluation; the training-only table (N = 1)
  and data of another N are refused, naming both counts."""
  root = tmp_path / "valve_only"
  shutil.copytree(dcase_sample / "valve", root / "valve")
  for run, extra in ((tmp_path / "named", ["--data_dir", str(root)]), (tmp_path / "unnamed", [])):
    assert convert_keras.main([str(keras_reference / "weights.h5"), str(run), *extra]) == 0
    config = configuration.apply_command_line(configuration.from_dict(checkpoint.read_config(run)), [str(root)])
    _, clips = clip_sets.discover(config)
    member = embedding.load_member(run, clip_sets.class_table(clips, config))
    assert member.classes.n_classes == 4 and member.step == 0
  assert (tmp_path / "named" / "classes.json").is_file() and not (tmp_path / "unnamed" / "classes.json").exists()
  training_table = classes.ClassTable.from_clips(classes.table_clips(clips, "training"))
  with pytest.raises(checkpoint.CheckpointMismatchError, match="its heads have 4 classes; the data has 1"):
    embedding.load_member(tmp_path / "unnamed", training_table)
  with pytest.raises(checkpoint.CheckpointMismatchError, match="only in .*classes.json: valve_00###pat_00###True"):
    embedding.load_member(tmp_path / "named", training_table)
  with pytest.raises(convert_keras.KerasWeightsError, match="the data's class table has 26 classes, the Keras heads 4"):
    convert_keras.main([str(keras_reference / "weights.h5"), str(tmp_path / "all"), "--data_dir", str(dcase_sample)])
