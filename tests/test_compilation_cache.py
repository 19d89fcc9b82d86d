"""The persistent compilation cache: where it goes, and that a second process reuses it."""

import json
import os
import pathlib
import subprocess
import sys

from featex_jax import compilation_cache

REPO = pathlib.Path(__file__).resolve().parents[1]

# One process: enable the cache as the command lines do, compile a small program, and report
# JAX's own cache-hit events (monitoring), so the test does not rely on timing.
PROGRAM = """
import json, sys
import jax, jax.numpy as jnp
from featex_jax import compilation_cache
hits = []
jax.monitoring.register_event_listener(lambda event, **_: hits.append(event))
folder = compilation_cache.enable(sys.argv[1] if len(sys.argv) > 1 else None)
x = jnp.arange(96.0).reshape(4, 24)
jax.block_until_ready(jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(x))
print(json.dumps({"folder": folder and str(folder),
                  "hits": hits.count("/jax/compilation_cache/cache_hits")}))
"""


def run(tmp_path, *args, **env):
  environment = {
    k: v
    for k, v in os.environ.items()
    if k not in (compilation_cache.ENV_VAR, "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")
  }
  environment.update(
    HOME=str(tmp_path / "home"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", PYTHONPATH=str(REPO), **env
  )
  result = subprocess.run(
    [sys.executable, "-c", PROGRAM, *args], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout.strip().splitlines()[-1])


def entries(folder):
  return sorted(p.name for p in pathlib.Path(folder).iterdir()) if pathlib.Path(folder).is_dir() else []


def test_a_second_process_loads_the_program_the_first_compiled(tmp_path):
  cache = tmp_path / "cache"
  first = run(tmp_path, **{compilation_cache.ENV_VAR: str(cache)})
  assert first == {"folder": str(cache), "hits": 0}
  stored = entries(cache)
  assert stored, "the first process stored nothing"
  second = run(tmp_path, **{compilation_cache.ENV_VAR: str(cache)})
  assert second["hits"] >= 1
  assert entries(cache) == stored  # served from the cache, nothing new compiled


def test_default_folder_is_under_the_home_cache_and_the_flag_wins(tmp_path):
  default = run(tmp_path)
  assert default["folder"] == str(tmp_path / "home" / ".cache" / "featex_jax" / "jax")
  assert entries(default["folder"])
  flagged = run(tmp_path, str(tmp_path / "flag"), **{compilation_cache.ENV_VAR: str(tmp_path / "env")})
  assert flagged["folder"] == str(tmp_path / "flag") and entries(tmp_path / "flag")
  assert not (tmp_path / "env").exists()


def test_off_stores_nothing(tmp_path):
  off = run(tmp_path, **{compilation_cache.ENV_VAR: "off", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax")})
  assert off == {"folder": None, "hits": 0}
  assert not (tmp_path / "jax").exists() and not (tmp_path / "home" / ".cache").exists()


def test_folder_setting_order(monkeypatch, tmp_path):
  monkeypatch.delenv(compilation_cache.ENV_VAR, raising=False)
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
  assert compilation_cache.folder() == tmp_path / "jax"
  monkeypatch.setenv(compilation_cache.ENV_VAR, str(tmp_path / "ours"))
  assert compilation_cache.folder() == tmp_path / "ours"
  assert compilation_cache.folder("~/elsewhere") == pathlib.Path.home() / "elsewhere"
  assert compilation_cache.folder("OFF") is None
