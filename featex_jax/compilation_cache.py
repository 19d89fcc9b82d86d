"""JAX's persistent compilation cache, on by default, so a second run does not recompile.

Compiling the training step takes 10-50 s on a CPU and the embedding program a few seconds
(BENCHMARKS.md); with the cache a resumed run, run_eval.py and featex_jax.score load the
programs an earlier run compiled for the same shapes and settings. The folder is, first
found: `--compilation_cache` of the command lines, $FEATEX_COMPILATION_CACHE, JAX's own
$JAX_COMPILATION_CACHE_DIR, ~/.cache/featex_jax/jax ($XDG_CACHE_HOME honoured); "off"
switches it off. JAX's defaults are kept: programs compiled in under 1 s are not stored
($JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS), and the folder is not size-limited (JAX's
limit, $JAX_COMPILATION_CACHE_MAX_SIZE, needs the `filelock` package); deleting it is safe.
JAX is imported only by `enable`, so the command lines can define their flag before setting
XLA's device flags.
"""

import os
import pathlib

ENV_VAR = "FEATEX_COMPILATION_CACHE"
OFF = ("off", "none", "0", "false", "no")
FLAG_HELP = (
  f"Folder of JAX's persistent compilation cache, or 'off'; default ${ENV_VAR}, "
  "else $JAX_COMPILATION_CACHE_DIR, else ~/.cache/featex_jax/jax."
)


def folder(setting=None):
  """The cache folder a flag value names (None: the environment, then the default), or None for off."""
  if setting is None:
    setting = os.environ.get(ENV_VAR) or os.environ.get("JAX_COMPILATION_CACHE_DIR") or ""
  if setting.strip().lower() in OFF:
    return None
  if setting.strip():
    return pathlib.Path(setting).expanduser()
  cache_home = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(cache_home) / "featex_jax" / "jax"


def enable(setting=None):
  """Point JAX's persistent cache at `folder(setting)`; call before the first compile. Returns it."""
  import jax

  path = folder(setting)
  jax.config.update("jax_enable_compilation_cache", path is not None)
  if path is not None:
    jax.config.update("jax_compilation_cache_dir", str(path))
  return path
