"""Training step throughput (clips/s) vs batch size, device count and dtype.

Times featex_jax.train's data-parallel step exactly as run_train.py runs it (mixup, StatEx,
FeatEx, three AdaCos heads, Adam; the clip cut on the device from int16 stored audio) on
random clips at the reference settings (configs/dcase2023.py: 288,000-sample clips). Compile
time (lower + XLA compile) is reported apart; the step time is the median of --steps timed
steps after --warmup untimed ones, each waited for with block_until_ready.

  python benchmarks/train_step.py                                   # batch 64, all devices, float32
  python benchmarks/train_step.py --batch 16 32 64 --dtype float32 bfloat16
  python benchmarks/train_step.py --fake-devices 8 --devices 1 2 4 8 --batch 64   # scaling shape on CPU
"""

import harness

from featex_jax import host_memory


def parse_args(argv):
  p = harness.parser(__doc__)
  harness.add_device_options(p)
  harness.add_sweep_options(p, "step")
  p.add_argument("--classes", type=int, default=42, help="N classes (DCASE2023: 42, as the Keras bench)")
  return p.parse_args(argv)


def measure(args, dtype, n_devices, batch):
  import jax

  from featex_jax import cpu_ops
  from featex_jax import model as model_lib
  from featex_jax import sharding
  from featex_jax import state as state_lib
  from featex_jax import train

  config = harness.reference_config(dtype, args.clip_samples)
  config.model.cpu_kernels = args.cpu_kernels
  mesh = sharding.data_mesh(jax.devices()[:n_devices])
  heads = state_lib.heads_for(config, args.classes)
  network = model_lib.create_model(config.model)
  state = sharding.replicate(state_lib.create_train_state(config, network, heads, jax.random.key(0)), mesh)
  step_fn = train.parallel_train_step(
    train.make_train_step(config, network, heads, args.classes),
    mesh,
    cpu_ops.compiler_options(config.model.cpu_kernels),
  )
  host = harness.stored_batch(
    batch, int(args.stored_seconds * config.data.sample_rate), config.data.clip_samples, args.classes
  )
  device_batch = sharding.global_batch(host, mesh)
  compiled, compile_s = harness.compile_seconds(step_fn, state, device_batch, train.step_key(0, 0))

  def one_step():
    nonlocal state
    state, metrics = compiled(state, device_batch, train.step_key(0, int(one_step.calls)))
    one_step.calls += 1
    jax.block_until_ready((state, metrics))

  one_step.calls = 0
  times = harness.timed(one_step, args.steps, args.warmup)
  return harness.timing_row(args, dtype, n_devices, batch, compiled, compile_s, times, "step")


def main(argv=None):
  args = parse_args(argv)
  harness.sweep(args, measure, "train_step", "step_s", f", {args.classes} classes", {"classes": args.classes})


if __name__ == "__main__":
  host_memory.run_with_allocator(main)  # as the command lines run: featex_jax/host_memory.py
