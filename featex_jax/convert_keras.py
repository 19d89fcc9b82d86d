"""The authors' Keras weights (wilkinghoff/ssl4asd) -> this project's parameters.

    python -m featex_jax.convert_keras WEIGHTS OUT [--data_dir ROOT ...]

OUT becomes a run folder (config.json, checkpoints/0) that run_eval.py and
`python -m featex_jax.score` restore. The Keras file holds no class names: with --data_dir
the class table is the reference's for that data (training and development test keys; its
N must match the heads); without it, evaluation builds it from the data it is given and
checks N then.

WEIGHTS: a Keras 2 HDF5 file of the authors' model (`model.save_weights('x.h5')`, or the
whole-model `model.save('x.h5')` their script writes), or an .npz with keys
`w/<layer>/<weight>` (the reference-golden layout). Reading .h5 needs h5py
(`pip install featex-jax[keras]`).

Keras lists the two branches interleaved (by graph depth), so layers are matched by name,
never by position: Keras names unnamed layers per class in construction order
(`conv2d`, `conv2d_1`, ...), so within each class the numeric suffixes, sorted, follow the
order in which `model_emb_cnn` builds the layers, whatever offset a process that built
several models gave them. `emb_fft` and `emb_mel` are named explicitly.
"""

import argparse
import re

import jax
import jax.numpy as jnp
import numpy as np

from featex_jax import errors
from featex_jax import model as model_lib

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK"
BATCH_NORM_WEIGHTS = {  # Keras weight -> (Flax collection, Flax name)
  "gamma": ("params", "scale"),
  "beta": ("params", "bias"),
  "moving_mean": ("batch_stats", "mean"),
  "moving_variance": ("batch_stats", "var"),
}
HEAD_MULTIPLES = {"classification": 1, "statex": 3, "featex": 9}  # classes per head / N


class KerasWeightsError(errors.FeatexError, ValueError):
  """The weights file does not hold the reference model this converter knows."""


def reference_construction_order():
  """Flax module paths per Keras layer class, in the order `model_emb_cnn` builds them."""
  order = {
    "conv1d": [f"spectrum/conv_{i}" for i in range(len(model_lib.SPECTRUM_CONVS))],
    "squeeze_and_excitation_block": [f"spectrum/se_{i}" for i in range(len(model_lib.SPECTRUM_CONVS))],
    "dense": [f"spectrum/dense_{i}" for i in range(model_lib.SPECTRUM_DENSE_LAYERS)],
    "batch_normalization": [f"spectrum/bn_{i}" for i in range(model_lib.SPECTRUM_DENSE_LAYERS)]
    + ["spectrogram/frequency_bn", "spectrogram/stem_bn"],
    "conv2d": ["spectrogram/stem_conv"],
  }
  for i, channels in enumerate(model_lib.STAGE_CHANNELS):
    for block in (1, 2):
      path = f"spectrogram/stage_{channels}/block_{block}"
      if i > 0 or block == 2:
        order["batch_normalization"].append(f"{path}/bn_in")
      order["conv2d"].append(f"{path}/conv_a")
      order["batch_normalization"].append(f"{path}/bn_a")
      order["conv2d"].append(f"{path}/conv_b")
      order["squeeze_and_excitation_block"].append(f"{path}/se")
      if i > 0 and block == 1:
        order["conv2d"].append(f"{path}/shortcut")
  order["batch_normalization"].append("spectrogram/flat_bn")
  return order


NAMED_LAYERS = {"emb_fft": "spectrum/embedding", "emb_mel": "spectrogram/embedding"}


def read_keras_weights(path):
  """{'<layer>/<weight>': array} from a Keras 2 HDF5 weights file or a golden-layout .npz."""
  path = str(path)
  try:
    with open(path, "rb") as f:
      magic = f.read(8)
  except OSError as e:
    raise KerasWeightsError(f"{path}: cannot read the weights file ({e.strerror})") from e
  if magic.startswith(HDF5_MAGIC):
    return _read_hdf5(path)
  if magic.startswith(ZIP_MAGIC):
    return _read_npz(path)
  raise KerasWeightsError(f"{path}: neither an HDF5 (.h5) nor an .npz file")


def _read_npz(path):
  with np.load(path) as data:
    weights = {key[2:]: data[key] for key in data.files if key.startswith("w/")}
  if not weights:
    raise KerasWeightsError(f"{path}: no 'w/<layer>/<weight>' arrays in this .npz")
  return weights


def _read_hdf5(path):
  try:
    import h5py
  except ImportError as e:
    raise ImportError(f"reading the Keras weights file {path} needs h5py: pip install 'featex-jax[keras]'") from e
  weights = {}
  with h5py.File(path, "r") as f:
    root = f["model_weights"] if "model_weights" in f else f  # model.save() vs save_weights()
    if "layer_names" not in root.attrs:
      raise KerasWeightsError(
        f"{path}: not a Keras 2 HDF5 weights file (no 'layer_names'); save the model with "
        "Keras 2's model.save_weights('weights.h5')"
      )
    for layer in map(_text, root.attrs["layer_names"]):
      group = root[layer]
      for weight in map(_text, group.attrs["weight_names"]):
        name = weight.removesuffix(":0").removeprefix(layer + "/")
        weights[f"{layer}/{name}"] = np.asarray(group[weight])
  return weights


def _text(value):
  return value.decode() if isinstance(value, bytes) else str(value)


def _layers_of_class(layers, keras_class):
  """Layer names `keras_class`, `keras_class_<k>`, sorted by k (construction order)."""
  pattern = re.compile(rf"{keras_class}(?:_(\d+))?")
  matches = [(int(m.group(1) or 0), name) for name in layers if (m := pattern.fullmatch(name))]
  return [name for _, name in sorted(matches)]


def convert(weights_path, model=None, clip_samples=288000):
  """Maps the reference's weights onto FeatExNet variables and the three AdaCos heads.

  Returns dict(params, batch_stats: nested dicts of float32 arrays for `model.apply`;
  heads: {classification, statex, featex} -> centres [embedding, classes * sub-clusters]
  as Keras stores them (column j = class j // n_subclusters, sub-cluster j % n_subclusters);
  scales: the same keys -> the adaptive scale s; n_classes: N; n_subclusters;
  unused: the Keras weights that were not used). `model`/`clip_samples` give the expected
  shapes (the first spectrum Dense depends on the clip length).
  """
  model = model_lib.FeatExNet() if model is None else model
  weights = read_keras_weights(weights_path)
  template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, clip_samples)), train=False))
  converted = {"params": {}, "batch_stats": {}}
  used = set()

  def put(collection, flax_path, array, keras_key):
    expected = _lookup(template[collection], flax_path)
    if expected is None:
      raise KerasWeightsError(
        f"{weights_path}: Keras weight {keras_key} maps to {collection}/{'/'.join(flax_path)}, "
        "which this model does not have"
      )
    if tuple(array.shape) != tuple(expected.shape):
      raise KerasWeightsError(
        f"{weights_path}: Keras weight {keras_key} has shape {tuple(array.shape)}, "
        f"expected {tuple(expected.shape)} for {collection}/{'/'.join(flax_path)}"
      )
    node = converted[collection]
    for name in flax_path[:-1]:
      node = node.setdefault(name, {})
    node[flax_path[-1]] = np.asarray(array, np.float32)
    used.add(keras_key)

  def layer_weights(layer):
    prefix = layer + "/"
    found = {key[len(prefix) :]: key for key in weights if key.startswith(prefix)}
    if not found:
      raise KerasWeightsError(f"{weights_path}: no weights for Keras layer {layer}")
    return found

  def expect(layer, names, found):
    if set(found) != set(names):
      raise KerasWeightsError(
        f"{weights_path}: Keras layer {layer} holds weights {sorted(found)}, expected {sorted(names)}"
      )

  def map_kernel(layer, module_path):
    found = layer_weights(layer)
    expect(layer, ["kernel"], found)
    put("params", (*module_path, "kernel"), weights[found["kernel"]], found["kernel"])

  def map_batch_norm(layer, module_path):
    found = layer_weights(layer)
    expect(layer, list(BATCH_NORM_WEIGHTS), found)
    for keras_name, (collection, flax_name) in BATCH_NORM_WEIGHTS.items():
      put(collection, (*module_path, flax_name), weights[found[keras_name]], found[keras_name])

  def map_squeeze_excitation(layer, module_path):
    found = layer_weights(layer)
    denses = _layers_of_class([name.split("/")[0] for name in found], "dense")
    expect(layer, [f"{dense}/kernel" for dense in denses], found)
    if len(denses) != len(model_lib.SE_DENSE_NAMES):
      raise KerasWeightsError(
        f"{weights_path}: Keras layer {layer} holds {len(denses)} dense "
        f"layers, expected {len(model_lib.SE_DENSE_NAMES)}"
      )
    for dense, flax_name in zip(denses, model_lib.SE_DENSE_NAMES):
      key = found[f"{dense}/kernel"]
      put("params", (*module_path, flax_name, "kernel"), weights[key], key)

  mappers = {
    "conv1d": map_kernel,
    "conv2d": map_kernel,
    "dense": map_kernel,
    "batch_normalization": map_batch_norm,
    "squeeze_and_excitation_block": map_squeeze_excitation,
  }
  layers = sorted({key.split("/")[0] for key in weights})
  for keras_class, module_paths in reference_construction_order().items():
    found = _layers_of_class(layers, keras_class)
    if len(found) != len(module_paths):
      raise KerasWeightsError(
        f"{weights_path}: {len(found)} Keras {keras_class} layers ({', '.join(found)}), "
        f"the reference model has {len(module_paths)}"
      )
    for layer, module_path in zip(found, module_paths):
      mappers[keras_class](layer, tuple(module_path.split("/")))
  for layer, module_path in NAMED_LAYERS.items():
    map_kernel(layer, tuple(module_path.split("/")))

  for collection in ("params", "batch_stats"):
    for path, _ in jax.tree_util.tree_leaves_with_path(template[collection]):
      names = tuple(key.key for key in path)
      if _lookup(converted[collection], names) is None:
        raise KerasWeightsError(f"{weights_path}: no Keras weight for {collection}/{'/'.join(names)}")

  converted.update(_convert_heads(weights_path, weights, used))
  converted["unused"] = sorted(set(weights) - used)
  return converted


def _convert_heads(weights_path, weights, used):
  """The three sub-cluster AdaCos heads, told apart by their class counts N, 3N, 9N."""
  heads = []
  for layer in _layers_of_class(sorted({key.split("/")[0] for key in weights}), "sc_ada_cos"):
    for key in weights:
      if m := re.fullmatch(rf"{layer}/W_AdaCos(\d+)_(\d+)", key):
        n_classes, n_subclusters = int(m.group(1)), int(m.group(2))
        scale_key = f"{layer}/s{n_classes}_{n_subclusters}"
        if scale_key not in weights:
          raise KerasWeightsError(f"{weights_path}: Keras layer {layer} has no scale {scale_key}")
        heads.append((n_classes, n_subclusters, key, scale_key))
  if len(heads) != len(HEAD_MULTIPLES):
    raise KerasWeightsError(f"{weights_path}: found {len(heads)} sub-cluster AdaCos heads (sc_ada_cos*), expected 3")
  heads.sort()
  n = heads[0][0]
  result = {"heads": {}, "scales": {}, "n_classes": n, "n_subclusters": heads[0][1]}
  for (n_classes, n_subclusters, key, scale_key), (name, multiple) in zip(heads, HEAD_MULTIPLES.items()):
    centres = weights[key]
    if (
      n_classes != multiple * n
      or n_subclusters != result["n_subclusters"]
      or (centres.ndim != 2 or centres.shape[1] != n_classes * n_subclusters)
    ):
      raise KerasWeightsError(
        f"{weights_path}: head {key} {tuple(centres.shape)} does not fit the {name} head "
        f"({multiple} x {n} classes x {result['n_subclusters']} sub-clusters)"
      )
    result["heads"][name] = np.asarray(centres, np.float32)
    result["scales"][name] = np.float32(weights[scale_key])
    used.update((key, scale_key))
  return result


def _lookup(tree, names):
  for name in names:
    if not isinstance(tree, dict) or name not in tree:
      return None
    tree = tree[name]
  return tree


def save_checkpoint(out, converted, config=None, classes=None):
  """Write `converted` as step 0 of a run in `out`, as training writes its runs: the parameters,
  heads and scales of the Keras model with a fresh Adam state, the config (default:
  configs/dcase2023.py), keras.json and, when known, the class table."""
  import pathlib

  from configs import dcase2023
  from featex_jax import checkpoint
  from featex_jax import files
  from featex_jax import state as state_lib

  out = pathlib.Path(out)
  config = config or dcase2023.get_config()
  config.data.clip_samples = converted["clip_samples"]
  n_classes = converted["n_classes"]
  if classes is not None and classes.n_classes != n_classes:
    raise KerasWeightsError(f"the data's class table has {classes.n_classes} classes, the Keras heads {n_classes}")
  heads = state_lib.heads_for(config, n_classes)
  params = {"backbone": converted["params"], "centres": {h.name: converted["heads"][h.name] for h in heads}}
  state = state_lib.from_arrays(
    config, heads, params, converted["batch_stats"], {h.name: converted["scales"][h.name] for h in heads}
  )
  checkpoint.save(checkpoint.manager(out), 0, state)
  checkpoint.write_metadata(out, config, classes)
  files.write_json(out / checkpoint.KERAS_FILE, {"n_classes": n_classes, "unused": converted["unused"]})


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("weights", help="Keras .h5 weights of the authors' model, or a golden .npz")
  parser.add_argument("out", help="run folder to write (config.json, checkpoints/)")
  parser.add_argument(
    "--clip-samples",
    type=int,
    default=288000,
    help="clip length the reference was trained on (sets the first spectrum Dense)",
  )
  parser.add_argument(
    "--data_dir", action="append", help="data root(s) whose class table (the reference's) names the heads"
  )
  args = parser.parse_args(argv)
  converted = convert(args.weights, clip_samples=args.clip_samples)
  converted["clip_samples"] = args.clip_samples
  classes = None
  if args.data_dir:
    from featex_jax.data import classes as classes_lib
    from featex_jax.data import layout

    classes = classes_lib.ClassTable.from_clips(classes_lib.table_clips(layout.discover(args.data_dir), "reference"))
  n_params = sum(np.size(x) for x in jax.tree.leaves(converted["params"]))
  print(
    f"{args.weights}: {n_params:,} backbone parameters, N = {converted['n_classes']} classes, "
    f"heads {', '.join(f'{k} {v.shape}' for k, v in converted['heads'].items())}"
  )
  for key in converted["unused"]:
    print(f"unused Keras weight: {key}")
  save_checkpoint(args.out, converted, classes=classes)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  errors.run_command(main)
