"""Shared test set-up: 8 fake CPU devices (multi-device tests), the shared real-data folder."""
import os
import pathlib

# Before JAX is imported anywhere: the data-parallel tests need several devices on CPU, and
# LLVM's cheapest optimisation level compiles the tests' many small programs ~40% faster
# (code generation only: the arithmetic is the same).
_TEST_XLA_FLAGS = ("--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0")
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", "")] + [f for f in _TEST_XLA_FLAGS if f.split("=")[0] not in os.environ.get("XLA_FLAGS", "")]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
  """../shared/data beside the checkout: real DCASE clips and the Keras reference numbers."""
  if not SHARED_DATA.is_dir():
    pytest.fail(f"{SHARED_DATA} is missing: the tests read real clips and golden numbers from it")
  return SHARED_DATA


@pytest.fixture(scope="session")
def golden(shared_data):
  import numpy as np
  with np.load(shared_data / "reference-golden" / "golden.npz") as data:
    return {k: data[k] for k in data.files}
