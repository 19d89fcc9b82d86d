"""The host allocator setting: which variables each choice sets, and that the re-executed
process really runs with them (page faults of a fresh buffer, tcmalloc mapped)."""

import os
import pathlib
import subprocess
import sys

import pytest

from featex_jax import host_memory
from featex_jax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[1]
GLIBC = (2, 36)
TCMALLOC = "libtcmalloc_minimal.so.4"


def environment(tcmalloc=None, glibc=GLIBC, huge_pages=True, **environ):
  return host_memory.environment(environ, tcmalloc, glibc, huge_pages)


def test_auto_prefers_tcmalloc_and_keeps_other_preloads():
  changes = environment(TCMALLOC, LD_PRELOAD="libother.so")
  assert changes["LD_PRELOAD"] == f"{TCMALLOC} libother.so"
  assert changes[host_memory.APPLIED_ENV] == "tcmalloc"
  assert int(changes["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) > 1 << 35


def test_auto_falls_back_to_huge_pages_and_keeps_other_tunables():
  changes = environment(GLIBC_TUNABLES="glibc.malloc.arena_max=2")
  assert changes == {
    "GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{host_memory.HUGE_PAGES_TUNABLE}",
    host_memory.APPLIED_ENV: "hugepages",
  }
  assert environment()["GLIBC_TUNABLES"] == host_memory.HUGE_PAGES_TUNABLE


def test_explicit_choices():
  assert environment(TCMALLOC, FEATEX_HOST_ALLOCATOR="hugepages")[host_memory.APPLIED_ENV] == "hugepages"
  assert environment(TCMALLOC, FEATEX_HOST_ALLOCATOR="tcmalloc")[host_memory.APPLIED_ENV] == "tcmalloc"
  assert environment(TCMALLOC, FEATEX_HOST_ALLOCATOR="system") == {}


@pytest.mark.parametrize(
  "environ",
  [
    {host_memory.APPLIED_ENV: "hugepages"},  # already re-executed: never a second time
    {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"},  # the user's own allocator
  ],
)
def test_leaves_the_process_alone(environ):
  assert environment(TCMALLOC, **environ) == {}


def test_no_huge_pages_to_be_had_runs_as_started_under_auto():
  assert environment(glibc=(2, 31)) == {}
  assert environment(glibc=None) == {}
  assert environment(huge_pages=False) == {}
  assert environment(TCMALLOC, huge_pages=False)[host_memory.APPLIED_ENV] == "tcmalloc"


@pytest.mark.parametrize(
  ("environ", "tcmalloc", "glibc", "huge_pages", "message"),
  [
    ({"FEATEX_HOST_ALLOCATOR": "fast"}, None, GLIBC, True, "'fast' is not one of auto, tcmalloc, hugepages, system"),
    ({"FEATEX_HOST_ALLOCATOR": "tcmalloc"}, None, GLIBC, True, "no tcmalloc library is installed"),
    ({"FEATEX_HOST_ALLOCATOR": "hugepages"}, None, (2, 31), True, "2.35 or later .*; this is glibc 2.31$"),
    ({"FEATEX_HOST_ALLOCATOR": "hugepages"}, None, GLIBC, False, "this is glibc 2.36, transparent huge pages are off"),
  ],
)
def test_impossible_choices_are_errors(environ, tcmalloc, glibc, huge_pages, message):
  with pytest.raises(ConfigError, match=message):
    host_memory.environment(environ, tcmalloc, glibc, huge_pages)


# The child mallocs and touches 256 MiB twice (freeing it between), as XLA:CPU does with a
# step's temporaries (NumPy is no use here: it asks for huge pages itself), and reports the
# page faults of each pass, the allocator marker and whether tcmalloc is mapped.
CHILD = """
import ctypes, resource
from featex_jax import host_memory

def report():
  libc = ctypes.CDLL(None)  # malloc as the program sees it: a preloaded allocator's first
  libc.malloc.restype = ctypes.c_void_p
  libc.free.argtypes = [ctypes.c_void_p]
  faults = []
  for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = libc.malloc(1 << 28)
    ctypes.memset(buffer, 1, 1 << 28)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    libc.free(buffer)
  mapped = "tcmalloc" in open("/proc/self/maps").read()
  print(host_memory.in_effect(), mapped, *faults)

host_memory.run_with_allocator(report)
"""


def run_child(setting):
  environ = {k: v for k, v in os.environ.items() if not k.startswith("FEATEX_HOST") and k != "LD_PRELOAD"}
  result = subprocess.run(
    [sys.executable, "-c", CHILD],
    env={**environ, "FEATEX_HOST_ALLOCATOR": setting},
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert len(lines) == 1, lines  # the command ran once, in the re-executed process
  applied, mapped, first, second = lines[0].split()
  return applied, mapped == "True", int(first), int(second)


PAGES_4K = (1 << 28) // 4096  # a fresh 256 MiB buffer faulted in 4 KiB at a time


def test_system_faults_every_page_of_every_fresh_buffer():
  applied, mapped, first, second = run_child("system")
  assert (applied, mapped) == ("system", False)
  assert first > PAGES_4K * 0.9 and second > PAGES_4K * 0.9


@pytest.mark.skipif(
  sys.platform != "linux" or (host_memory.glibc_version() or (0, 0)) < host_memory.HUGE_PAGES_GLIBC,
  reason="glibc's huge-page tunable needs Linux with glibc 2.35+",
)
@pytest.mark.skipif(not host_memory.transparent_huge_pages(), reason="transparent huge pages are off on this kernel")
def test_huge_pages_fault_a_fresh_buffer_in_far_fewer_faults():
  applied, mapped, first, second = run_child("hugepages")
  assert (applied, mapped) == ("hugepages", False)
  assert first < PAGES_4K / 10 and second < PAGES_4K / 10


@pytest.mark.skipif(host_memory.find_tcmalloc() is None, reason="tcmalloc is not installed")
def test_tcmalloc_reuses_a_freed_buffer_without_faulting():
  applied, mapped, first, second = run_child("tcmalloc")
  assert (applied, mapped) == ("tcmalloc", True)
  assert first > PAGES_4K * 0.9
  assert second < PAGES_4K / 10
