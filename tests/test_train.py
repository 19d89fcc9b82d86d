"""The train step: device-count invariance (also of padded partial batches), determinism,
learning, every paper variant, the matmul precision it compiles with."""

import dataclasses
import importlib
import re

import jax
import numpy as np
import pytest

from configs import synthetic
from featex_jax import embedding
from featex_jax import model as model_lib
from featex_jax import sharding
from featex_jax import state as state_lib
from featex_jax import train

N_CLASSES = 4
CLIP = 16000  # 1 s clips keep CPU compile and step times small; the model is the real one
PARTIAL = 5  # real clips in the partial batch of 8 (padded): three of 8 devices hold only padding


def tiny_config(variant=None):
  config = (
    importlib.import_module(f"configs.variants.{variant}").get_config("synthetic")
    if variant
    else synthetic.get_config()
  )
  config.data.clip_samples = CLIP
  config.train.batch_size = 8
  return config


def random_batch(seed, batch_size=8, stored=12000, real_rows=None):
  """Random stored clips; rows from `real_rows` on are padding (mask False) full of other random clips."""
  rng = np.random.default_rng(seed)
  return {
    "audio": (rng.standard_normal((batch_size, stored)) * 3000).astype(np.int16),
    "lengths": rng.integers(stored // 2, stored + 1, batch_size).astype(np.int32),
    "offsets": rng.integers(0, 4000, batch_size).astype(np.int32),
    "labels": rng.integers(0, N_CLASSES, batch_size).astype(np.int32),
    "mask": np.arange(batch_size) < (batch_size if real_rows is None else real_rows),
  }


def compiled_step(config, devices):
  """(initial replicated state, jit'd step, mesh) for `config` on a mesh of `devices`."""
  heads = state_lib.heads_for(config, N_CLASSES)
  network = model_lib.create_model(config.model)
  mesh = sharding.data_mesh(devices)
  state = sharding.replicate(state_lib.create_train_state(config, network, heads, jax.random.key(config.seed)), mesh)
  return state, train.parallel_train_step(train.make_train_step(config, network, heads, N_CLASSES), mesh), mesh


def run_steps(config, devices, n_steps, compiled=None):
  """n_steps on random batches; returns ([host state after each step], [metrics of each step])."""
  state, step, mesh = compiled or compiled_step(config, devices)
  states, history = [], []
  for i in range(n_steps):
    state, metrics = step(state, sharding.global_batch(random_batch(i), mesh), train.step_key(config.seed, i))
    states.append(jax.device_get(state))
    history.append(jax.device_get(metrics))
  return states, history


@dataclasses.dataclass
class Runs:
  """What one mesh computed from one initial state: 5 steps, and one step on a partial batch."""

  initial: object  # host state
  step: object  # the jit'd step
  mesh: object
  states: list  # host state after each of the 5 steps
  history: list  # metrics of each of the 5 steps
  partial: tuple  # (host state, metrics) after one step on random_batch(0, real_rows=PARTIAL)


def runs_on(config, devices):
  state, step, mesh = compiled_step(config, devices)
  initial = jax.device_get(state)
  partial_batch = sharding.global_batch(random_batch(0, real_rows=PARTIAL), mesh)
  partial_state, metrics = step(sharding.replicate(initial, mesh), partial_batch, train.step_key(config.seed, 0))
  partial = (jax.device_get(partial_state), jax.device_get(metrics))
  states, history = run_steps(config, devices, 5, (sharding.replicate(initial, mesh), step, mesh))
  return Runs(initial, step, mesh, states, history, partial)


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
  """5 steps of the same global batches and keys on 1 device and on 8 devices, and one step on
  a partial batch (Runs).

  Adam's first update is lr * g / (|g| + eps), i.e. +-lr for any |g| >> eps, so with the
  reference's eps = 1e-7 float32 noise in a gradient that is zero in exact arithmetic flips a
  parameter by 2 lr. eps = 1e-3 keeps the update continuous, so the comparison measures the
  parallel computation (sums over clips held by different devices), not that discontinuity.
  """
  if jax.device_count() < 8:
    pytest.fail("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 (set in conftest.py)")
  config = tiny_config()
  config.optim.eps = 1e-3
  return config, runs_on(config, jax.devices()[:1]), runs_on(config, jax.devices()[:8])


def assert_one_step_close(state1, metrics1, state8, metrics8):
  assert_metrics_close([metrics1], [metrics8], 1e-5)
  assert_trees_close(state8.scales, state1.scales, 1e-5, 1e-3)
  # Running means start at 0 and take 1 - momentum = 1% of the batch mean in a step; the batch
  # mean is a cancellation of activations of order 1, so its float32 noise is ~1e-5 of that
  # order, not of the (small) mean: floor 1e-2 (the 1% step of a unit activation). Measured on
  # an Intel Xeon: 4.3e-8 absolute on a running mean of 3.7e-3, over the old floor's 3.7e-8.
  assert_trees_close(state8.batch_stats, state1.batch_stats, 1e-5, 1e-2)
  # Gradient entries are float32 sums over 8 clips in another order: measured 5e-5 of a
  # leaf's largest value at worst (a BatchNorm bias, one Adam step from zero).
  assert_trees_close(state8.params, state1.params, 1e-4, 1e-3)


def test_one_step_on_eight_devices_equals_one_step_on_one_device(one_and_eight_devices):
  _, one, eight = one_and_eight_devices
  assert_one_step_close(one.states[0], one.history[0], eight.states[0], eight.history[0])


def test_a_partial_batch_on_eight_devices_equals_one_device(one_and_eight_devices):
  """5 real clips padded to 8: three devices hold only padding, the masked statistics are global."""
  _, one, eight = one_and_eight_devices
  assert_one_step_close(*one.partial, *eight.partial)
  assert not np.allclose(one.partial[1]["loss/total"], one.history[0]["loss/total"])  # the padding is left out


def test_five_steps_on_eight_devices_stay_with_one_device(one_and_eight_devices):
  """Losses and scales stay together (measured 5e-5 at step 5: float32 differences grow
  about 10x per step on this tiny random batch), and so do the parameters: the 8-device run
  departs from the 1-device run by under 5% of the distance training moved them in steps
  2-5 (measured 0.6% on an Intel Xeon; statistics or gradients reduced over one device's
  clips only would move them apart by the order of the steps themselves; the one-step test
  above pins the computation itself). Relative to the parameters' norm the departure was 5e-5
  on an AMD EPYC and 1.3e-4 on the Xeon: float noise that grows with each step."""
  _, one, eight = one_and_eight_devices
  states1, history1, states8, history8 = one.states, one.history, eight.states, eight.history
  assert_metrics_close(history1, history8, 1e-3)
  assert int(states8[-1].step) == int(states1[-1].step) == 5
  flat = lambda state: np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params)])  # noqa: E731
  moved = np.linalg.norm(flat(states1[-1]) - flat(states1[0]))
  assert np.linalg.norm(flat(states8[-1]) - flat(states1[-1])) <= 5e-2 * moved


def test_padding_rows_change_nothing(one_and_eight_devices):
  """What the padding rows of a partial batch hold never reaches the result: other random
  clips and labels in them give bit-identical parameters, statistics, scales and metrics."""
  config, one, _ = one_and_eight_devices
  batch = random_batch(0, real_rows=PARTIAL)
  other = random_batch(100)
  padding = ~batch["mask"]
  for name in ("audio", "lengths", "offsets", "labels"):
    batch[name][padding] = other[name][padding]
  state, metrics = one.step(
    sharding.replicate(one.initial, one.mesh), sharding.global_batch(batch, one.mesh), train.step_key(config.seed, 0)
  )
  got = jax.tree.leaves((jax.device_get(state), jax.device_get(metrics)))
  for x, y in zip(got, jax.tree.leaves(one.partial)):
    np.testing.assert_array_equal(x, y)


def precisions_in(lowered_text):
  """The precision names of every dot_general and convolution of a lowered program."""
  ops = [
    line for line in lowered_text.splitlines() if "stablehlo.dot_general" in line or "stablehlo.convolution" in line
  ]
  assert ops
  return {name for line in ops for name in re.findall(r"\b(DEFAULT|HIGHEST|HIGH)\b", line) or ["none"]}


@pytest.mark.parametrize(
  "setting, expected", [("float32", {"HIGHEST"}), ("bfloat16", {"DEFAULT"}), ("default", {"HIGH"})]
)
def test_matmul_precision_reaches_the_compiled_train_step(setting, expected):
  """Every dot and convolution of the step, forward and backward, whatever the caller's
  context (here TF32); "default" leaves it to that context."""
  config = tiny_config()
  config.model.matmul_precision = setting
  heads = state_lib.heads_for(config, N_CLASSES)
  network = model_lib.create_model(config.model)
  mesh = sharding.data_mesh(jax.devices()[:1])
  state = jax.eval_shape(lambda: state_lib.create_train_state(config, network, heads, jax.random.key(0)))
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), random_batch(0))
  step = train.parallel_train_step(train.make_train_step(config, network, heads, N_CLASSES), mesh)
  with jax.default_matmul_precision("tensorfloat32"):
    text = step.lower(state, batch, train.step_key(0, 0)).as_text()
  assert precisions_in(text) == expected


def test_matmul_precision_reaches_the_embedding_function():
  """Evaluation and scoring embed at the run's setting too."""
  config = tiny_config()
  network = model_lib.create_model(config.model)
  variables = jax.eval_shape(lambda: network.init(jax.random.key(0), np.zeros((1, CLIP), np.float32), train=False))
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), random_batch(0))
  fn = embedding.embedding_fn(network, config, sharding.data_mesh(jax.devices()[:1]))
  with jax.default_matmul_precision("tensorfloat32"):
    text = fn.lower(variables, batch["audio"], batch["lengths"], batch["offsets"]).as_text()
  assert precisions_in(text) == {"HIGHEST"}


def test_scales_move_and_frozen_centres_stay(one_and_eight_devices):
  config, one, _ = one_and_eight_devices
  states, history = one.states, one.history
  fresh_centres = state_lib.create_train_state(
    config, model_lib.create_model(config.model), state_lib.heads_for(config, N_CLASSES), jax.random.key(config.seed)
  ).params["centres"]
  np.testing.assert_array_equal(states[-1].params["centres"]["classification"], fresh_centres["classification"])
  assert not np.allclose(states[-1].params["centres"]["featex"], fresh_centres["featex"])
  n_sub = config.loss.n_subclusters
  for name, n_classes in (("classification", N_CLASSES), ("statex", 3 * N_CLASSES), ("featex", 9 * N_CLASSES)):
    initial_scale = np.sqrt(2) * np.log(n_classes * n_sub - 1)
    assert history[-1][f"scale/{name}"] != pytest.approx(initial_scale)
    assert np.isfinite(history[-1][f"scale/{name}"])


def test_same_seed_gives_identical_parameters(one_and_eight_devices):
  """Determinism: the same program, seed and batches give bit-identical parameters."""
  config, one, _ = one_and_eight_devices
  again, _ = run_steps(config, jax.devices()[:1], 2)
  for x, y in zip(jax.tree.leaves(one.states[1]), jax.tree.leaves(again[1])):
    np.testing.assert_array_equal(x, y)


def test_loss_decreases_over_30_steps():
  """Learning works: repeating one small batch, the loss must fall clearly."""
  config = tiny_config("baseline")
  config.augment.mixup = False
  heads = state_lib.heads_for(config, N_CLASSES)
  network = model_lib.create_model(config.model)
  mesh = sharding.data_mesh(jax.devices()[:1])
  state = sharding.replicate(state_lib.create_train_state(config, network, heads, jax.random.key(0)), mesh)
  step = train.parallel_train_step(train.make_train_step(config, network, heads, N_CLASSES), mesh)
  batch = sharding.global_batch(random_batch(1), mesh)
  losses = []
  for i in range(30):
    state, metrics = step(state, batch, train.step_key(0, i))
    losses.append(float(metrics["loss/total"]))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses


VARIANTS = [
  "baseline",
  "statex_only",
  "featex_only",
  "regular_statex",
  "regular_featex",
  "proposed",
  "ablation_no_class_labels",
  "ablation_frozen_ssl_centres",
  "ablation_no_tmn_full_statex",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_has_finite_gradients_and_trains(variant):
  config = tiny_config(variant)
  states, history = run_steps(config, jax.devices()[:1], 2)
  assert all(np.isfinite(v) for m in history for v in m.values()), history
  for leaf in jax.tree.leaves(states[-1].params):
    assert np.all(np.isfinite(leaf))


def test_head_class_counts_follow_the_augmentations():
  counts = lambda variant: {h.name: h.n_classes for h in state_lib.heads_for(tiny_config(variant), 5)}
  assert counts("proposed") == {"classification": 5, "statex": 15, "featex": 45}
  assert counts("baseline") == {"classification": 5}
  assert counts("regular_featex") == {"classification": 5, "featex": 15}
  assert counts("ablation_no_class_labels") == {"classification": 5, "statex": 3, "featex": 9}
  config = tiny_config("baseline")
  config.loss.featex_weight = 1.0
  with pytest.raises(ValueError, match="augment.featex is off"):
    state_lib.heads_for(config, 5)
