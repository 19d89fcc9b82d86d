"""Embedding (scoring) throughput in clips/s: the forward pass run_eval.py runs.

Times featex_jax.embedding.embedding_fn (the clip cut on the device from int16 stored audio,
then the network in inference mode, embeddings [B, 256]) on random clips at the reference
clip length. Compile time is reported apart; the batch time is the median of --steps timed
calls after --warmup untimed ones, each waited for with block_until_ready.

  python benchmarks/forward.py                       # batch 64, all devices, float32
  python benchmarks/forward.py --batch 16 64 --dtype float32 bfloat16
  python benchmarks/forward.py --fake-devices 8 --devices 1 8
"""

import harness

from featex_jax import host_memory


def parse_args(argv):
  p = harness.parser(__doc__)
  harness.add_device_options(p)
  harness.add_sweep_options(p, "batch")
  return p.parse_args(argv)


def measure(args, dtype, n_devices, batch):
  import jax
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from featex_jax import embedding
  from featex_jax import model as model_lib
  from featex_jax import sharding
  from featex_jax import state as state_lib

  config = harness.reference_config(dtype, args.clip_samples)
  config.model.cpu_kernels = args.cpu_kernels
  mesh = sharding.data_mesh(jax.devices()[:n_devices])
  network = model_lib.create_model(config.model)
  heads = state_lib.heads_for(config, 42)  # the heads do not enter the embedding
  state = state_lib.create_train_state(config, network, heads, jax.random.key(0))
  variables = jax.device_put(
    {"params": state.params["backbone"], "batch_stats": state.batch_stats}, NamedSharding(mesh, P())
  )
  fn = embedding.embedding_fn(network, config, mesh)
  host = harness.stored_batch(batch, int(args.stored_seconds * config.data.sample_rate), config.data.clip_samples, 42)
  device_batch = sharding.global_batch({k: host[k] for k in ("audio", "lengths", "offsets")}, mesh)
  inputs = (variables, device_batch["audio"], device_batch["lengths"], device_batch["offsets"])
  compiled, compile_s = harness.compile_seconds(fn, *inputs)
  times = harness.timed(lambda: compiled(*inputs).block_until_ready(), args.steps, args.warmup)
  return harness.timing_row(args, dtype, n_devices, batch, compiled, compile_s, times, "batch")


def main(argv=None):
  args = parse_args(argv)
  harness.sweep(args, measure, "forward", "batch_s", "", None)


if __name__ == "__main__":
  host_memory.run_with_allocator(main)  # as the command lines run: featex_jax/host_memory.py
