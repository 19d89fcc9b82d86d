"""Shared test set-up: 8 fake CPU devices (multi-device tests), the real-data fixtures in tests/data."""

import os
import pathlib

# Before JAX is imported anywhere: the data-parallel tests need several devices on CPU, and
# LLVM's cheapest optimisation level compiles the tests' many small programs ~40% faster
# (code generation only: the arithmetic is the same).
_TEST_XLA_FLAGS = ("--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0")
os.environ["XLA_FLAGS"] = " ".join(
  [os.environ.get("XLA_FLAGS", "")]
  + [f for f in _TEST_XLA_FLAGS if f.split("=")[0] not in os.environ.get("XLA_FLAGS", "")]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

TEST_DATA = pathlib.Path(__file__).resolve().parent / "data"
KERAS_REFERENCE = TEST_DATA / "keras-reference"
# golden.npz's head keys (adacos/<head>/...) -> the head's Keras layer in weights.h5.
HEAD_LAYERS = {"N": "sc_ada_cos_1", "3N": "sc_ada_cos_2", "9N": "sc_ada_cos"}


@pytest.fixture(scope="session")
def dcase_sample():
  """36 real DCASE2023 development clips and their manifest.csv (tests/data/README.md)."""
  return TEST_DATA / "dcase2023-sample"


@pytest.fixture(scope="session")
def keras_reference():
  """The authors' Keras model's weights.h5 and golden.npz (tests/data/keras-reference/README.md)."""
  return KERAS_REFERENCE


@pytest.fixture(scope="session")
def golden(keras_reference):
  """golden.npz by key, with the weights it does not store twice taken from weights.h5.

  weights.h5 was saved after the heads' one training call; with the scales set back to the
  values before it (`adacos/<head>/s_before`) it is the reference model `w/<layer>/<weight>`
  as built, whose centres are `adacos/<head>/W`. Every head was fed `t/emb`.
  """
  import numpy as np

  from featex_jax import convert_keras

  with np.load(keras_reference / "golden.npz") as data:
    golden = {k: data[k] for k in data.files}
  weights = convert_keras.read_keras_weights(keras_reference / "weights.h5")
  for head, layer in HEAD_LAYERS.items():
    n_classes = golden[f"adacos/{head}/labels"].shape[1]
    weights[f"{layer}/s{n_classes}_16"] = golden[f"adacos/{head}/s_before"]
    golden[f"adacos/{head}/W"] = weights[f"{layer}/W_AdaCos{n_classes}_16"]
    golden[f"adacos/{head}/emb"] = golden["t/emb"]
  golden.update({f"w/{key}": value for key, value in weights.items()})
  return golden
