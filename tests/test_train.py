"""The train step: device-count invariance, determinism, learning, every paper variant."""
import importlib

import jax
import numpy as np
import pytest

from configs import synthetic
from featex_jax import model as model_lib
from featex_jax import train

N_CLASSES = 4
CLIP = 16000  # 1 s clips keep CPU compile and step times small; the model is the real one


def tiny_config(variant=None):
  config = (importlib.import_module(f"configs.variants.{variant}").get_config("synthetic")
            if variant else synthetic.get_config())
  config.data.clip_samples = CLIP
  config.train.batch_size = 8
  return config


def random_batch(seed, batch_size=8, stored=12000):
  rng = np.random.default_rng(seed)
  return {"audio": (rng.standard_normal((batch_size, stored)) * 3000).astype(np.int16),
          "lengths": rng.integers(stored // 2, stored + 1, batch_size).astype(np.int32),
          "offsets": rng.integers(0, 4000, batch_size).astype(np.int32),
          "labels": rng.integers(0, N_CLASSES, batch_size).astype(np.int32)}


def compiled_step(config, devices):
  """(initial replicated state, jit'd step, mesh) for `config` on a mesh of `devices`."""
  heads = train.heads_for(config, N_CLASSES)
  network = model_lib.create_model(config.model)
  mesh = train.data_mesh(devices)
  state = train.replicate(train.create_train_state(config, network, heads, jax.random.key(config.seed)), mesh)
  return state, train.parallel_train_step(train.make_train_step(config, network, heads, N_CLASSES), mesh), mesh


def run_steps(config, devices, n_steps, compiled=None):
  """n_steps on random batches; returns ([host state after each step], [metrics of each step])."""
  state, step, mesh = compiled or compiled_step(config, devices)
  states, history = [], []
  with jax.default_matmul_precision("float32"):
    for i in range(n_steps):
      state, metrics = step(state, train.global_batch(random_batch(i), mesh), train.step_key(config.seed, i))
      states.append(jax.device_get(state))
      history.append(jax.device_get(metrics))
  return states, history


def assert_trees_close(a, b, rtol, floor):
  """Each leaf within rtol of the other, relative to max(the leaf's largest magnitude, floor).

  The floor matters for statistics that are zero by construction (the frequency BatchNorm's
  running mean of a temporal-mean-normalised spectrogram) and hold only float noise.
  """
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    scale = max(np.max(np.abs(y)), floor)
    assert np.max(np.abs(x - y)) <= rtol * scale, (jax.tree_util.keystr(path), np.max(np.abs(x - y)) / scale)


def assert_metrics_close(history_a, history_b, rtol):
  for step, (a, b) in enumerate(zip(history_a, history_b)):
    for name in a:
      if not name.startswith("accuracy/"):  # a count of argmaxes, not a float to compare
        np.testing.assert_allclose(b[name], a[name], rtol=rtol, atol=1e-7, err_msg=f"step {step}: {name}")


@pytest.fixture(scope="module")
def one_and_eight_devices():
  """5 steps of the same global batches and keys on 1 device and on 8 devices.

  Adam's first update is lr * g / (|g| + eps), i.e. +-lr for any |g| >> eps, so with the
  reference's eps = 1e-7 float32 noise in a gradient that is zero in exact arithmetic flips a
  parameter by 2 lr. eps = 1e-3 keeps the update continuous, so the comparison measures the
  parallel computation (sums over clips held by different devices), not that discontinuity.
  """
  if jax.device_count() < 8:
    pytest.fail("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 (set in conftest.py)")
  config = tiny_config()
  config.optim.eps = 1e-3
  return config, run_steps(config, jax.devices()[:1], 5), run_steps(config, jax.devices()[:8], 5)


def test_one_step_on_eight_devices_equals_one_step_on_one_device(one_and_eight_devices):
  _, (states1, history1), (states8, history8) = one_and_eight_devices
  assert_metrics_close(history1[:1], history8[:1], 1e-5)
  assert_trees_close(states8[0].scales, states1[0].scales, 1e-5, 1e-3)
  # A BatchNorm mean near zero (stage_32 block_1) is a sum that cancels: measured 9.8e-6 of
  # its largest value with XLA's ops, 1.03e-5 with featex_jax.cpu_ops (the default on CPU).
  assert_trees_close(states8[0].batch_stats, states1[0].batch_stats, 2e-5, 1e-3)
  # Gradient entries are float32 sums over 8 clips in another order: measured 5e-5 of a
  # leaf's largest value at worst (a BatchNorm bias, one Adam step from zero).
  assert_trees_close(states8[0].params, states1[0].params, 1e-4, 1e-3)


def test_five_steps_on_eight_devices_stay_with_one_device(one_and_eight_devices):
  """Losses and scales stay together (measured 5e-5 at step 5: float32 differences grow
  about 10x per step on this tiny random batch), and so do the parameters."""
  _, (states1, history1), (states8, history8) = one_and_eight_devices
  assert_metrics_close(history1, history8, 1e-3)
  assert int(states8[-1].step) == int(states1[-1].step) == 5
  flat1 = np.concatenate([np.ravel(x) for x in jax.tree.leaves(states1[-1].params)])
  flat8 = np.concatenate([np.ravel(x) for x in jax.tree.leaves(states8[-1].params)])
  assert np.linalg.norm(flat8 - flat1) <= 1e-4 * np.linalg.norm(flat1)


def test_scales_move_and_frozen_centres_stay(one_and_eight_devices):
  config, (states, history), _ = one_and_eight_devices
  fresh_centres = train.create_train_state(
      config, model_lib.create_model(config.model), train.heads_for(config, N_CLASSES),
      jax.random.key(config.seed)).params["centres"]
  np.testing.assert_array_equal(states[-1].params["centres"]["classification"], fresh_centres["classification"])
  assert not np.allclose(states[-1].params["centres"]["featex"], fresh_centres["featex"])
  n_sub = config.loss.n_subclusters
  for name, n_classes in (("classification", N_CLASSES), ("statex", 3 * N_CLASSES), ("featex", 9 * N_CLASSES)):
    initial_scale = np.sqrt(2) * np.log(n_classes * n_sub - 1)
    assert history[-1][f"scale/{name}"] != pytest.approx(initial_scale)
    assert np.isfinite(history[-1][f"scale/{name}"])


def test_same_seed_gives_identical_parameters(one_and_eight_devices):
  """Determinism: the same program, seed and batches give bit-identical parameters."""
  config, (states, _), _ = one_and_eight_devices
  again, _ = run_steps(config, jax.devices()[:1], 2)
  for x, y in zip(jax.tree.leaves(states[1]), jax.tree.leaves(again[1])):
    np.testing.assert_array_equal(x, y)


def test_loss_decreases_over_30_steps():
  """Learning works: repeating one small batch, the loss must fall clearly."""
  config = tiny_config("baseline")
  config.augment.mixup = False
  heads = train.heads_for(config, N_CLASSES)
  network = model_lib.create_model(config.model)
  mesh = train.data_mesh(jax.devices()[:1])
  state = train.replicate(train.create_train_state(config, network, heads, jax.random.key(0)), mesh)
  step = train.parallel_train_step(train.make_train_step(config, network, heads, N_CLASSES), mesh)
  batch = train.global_batch(random_batch(1), mesh)
  losses = []
  for i in range(30):
    state, metrics = step(state, batch, train.step_key(0, i))
    losses.append(float(metrics["loss/total"]))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses


VARIANTS = ["baseline", "statex_only", "featex_only", "regular_statex", "regular_featex", "proposed",
            "ablation_no_class_labels", "ablation_frozen_ssl_centres", "ablation_no_tmn_full_statex"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_has_finite_gradients_and_trains(variant):
  config = tiny_config(variant)
  states, history = run_steps(config, jax.devices()[:1], 2)
  assert all(np.isfinite(v) for m in history for v in m.values()), history
  for leaf in jax.tree.leaves(states[-1].params):
    assert np.all(np.isfinite(leaf))


def test_head_class_counts_follow_the_augmentations():
  counts = lambda variant: {h.name: h.n_classes for h in train.heads_for(tiny_config(variant), 5)}
  assert counts("proposed") == {"classification": 5, "statex": 15, "featex": 45}
  assert counts("baseline") == {"classification": 5}
  assert counts("regular_featex") == {"classification": 5, "featex": 15}
  assert counts("ablation_no_class_labels") == {"classification": 5, "statex": 3, "featex": 9}
  config = tiny_config("baseline")
  config.loss.featex_weight = 1.0
  with pytest.raises(ValueError, match="augment.featex is off"):
    train.heads_for(config, 5)
