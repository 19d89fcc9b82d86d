"""The host allocator for XLA:CPU: keep each step's temporaries from page-faulting in anew.

XLA:CPU mallocs every execution's temporaries (3.4 GiB for a training step at batch 64) and
frees them after it. glibc serves blocks over 32 MiB with mmap and gives them back with munmap,
so every step touches about a million fresh 4 KiB pages that the kernel must fault in and zero:
1.2-1.5 s of kernel time per step on the Intel benchmark machine, and XLA's fusions then run at
a third of the memory bandwidth a reused buffer gets (BENCHMARKS.md). tcmalloc keeps freed
blocks for reuse; glibc's huge pages (`glibc.malloc.hugetlb=1`, glibc 2.35+) fault 2 MiB at a
time. Either made training 1.1-1.3x faster there.

Both must be in place when the process starts (LD_PRELOAD, GLIBC_TUNABLES), so the command
lines re-execute themselves once with them. FEATEX_HOST_ALLOCATOR chooses:
  auto       tcmalloc where it is installed (e.g. Debian's libtcmalloc-minimal4), else huge pages
             where glibc 2.35+ and the kernel's transparent huge pages allow, else as started
  tcmalloc   tcmalloc, an error where it is not installed
  hugepages  glibc's huge pages
  system     leave the process as it started
An allocator the user preloaded (LD_PRELOAD naming a malloc) is left alone by `auto`.

Imports no JAX: it runs before JAX starts.
"""

import ctypes.util
import os
import platform
import sys

from featex_jax.errors import ConfigError

ENV = "FEATEX_HOST_ALLOCATOR"
APPLIED_ENV = "FEATEX_HOST_ALLOCATOR_APPLIED"  # set in the re-executed process: no second exec
SETTINGS = ("auto", "tcmalloc", "hugepages", "system")
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
HUGE_PAGES_GLIBC = (2, 35)
# tcmalloc reports every allocation over 1 GiB on stderr, a line per training step here.
TCMALLOC_QUIET = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}


def run_with_allocator(command, *args):
  """Apply FEATEX_HOST_ALLOCATOR (re-executing this command line where it needs a fresh
  process), then return `command(*args)`. Call from a command line's `__main__` only."""
  changes = environment(os.environ, find_tcmalloc(), glibc_version(), transparent_huge_pages())
  if changes:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
      os.execve(sys.executable, sys.orig_argv, {**os.environ, **changes})
    except OSError as error:  # no restart: the command still runs, only slower
      print(f"warning: could not restart with {changes[APPLIED_ENV]} ({error}); running as started", file=sys.stderr)
  return command(*args)


def environment(environ, tcmalloc, glibc, huge_pages=True):
  """The variables to add before re-executing, or {} to run as started. `tcmalloc` is the
  library's name or None; `glibc` is (major, minor) or None on another C library;
  `huge_pages` says whether the kernel has transparent huge pages on (always or madvise)."""
  setting = environ.get(ENV, "auto")
  if setting not in SETTINGS:
    raise ConfigError(f"{ENV}={setting!r} is not one of {', '.join(SETTINGS)}")
  if setting == "system" or APPLIED_ENV in environ:
    return {}
  preloaded = environ.get("LD_PRELOAD", "")
  if setting == "auto" and "malloc" in preloaded:
    return {}
  if setting == "tcmalloc" and tcmalloc is None:
    raise ConfigError(f"{ENV}=tcmalloc: no tcmalloc library is installed (Debian: libtcmalloc-minimal4)")
  if setting in ("auto", "tcmalloc") and tcmalloc is not None:
    return {
      "LD_PRELOAD": " ".join(filter(None, [tcmalloc, preloaded])),
      **TCMALLOC_QUIET,
      APPLIED_ENV: "tcmalloc",
    }
  if glibc is None or glibc < HUGE_PAGES_GLIBC or not huge_pages:
    if setting == "hugepages":
      raise ConfigError(
        f"{ENV}=hugepages needs glibc 2.35 or later and transparent huge pages; {_describe(glibc, huge_pages)}"
      )
    return {}
  tunables = environ.get("GLIBC_TUNABLES", "")
  return {"GLIBC_TUNABLES": ":".join(filter(None, [tunables, HUGE_PAGES_TUNABLE])), APPLIED_ENV: "hugepages"}


def find_tcmalloc():
  """tcmalloc's shared library name as the dynamic loader finds it, or None."""
  if sys.platform != "linux":
    return None
  return ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")


def glibc_version():
  """(major, minor) of the running glibc, or None on another C library."""
  library, version = platform.libc_ver()
  if library != "glibc" or not version:
    return None
  return tuple(int(part) for part in version.split(".")[:2])


def transparent_huge_pages():
  """Whether the kernel hands out transparent huge pages (its setting is not "never")."""
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as setting:
      return "[never]" not in setting.read()
  except OSError:
    return False


def in_effect():
  """What this process runs with, for benchmark records: tcmalloc, hugepages or system."""
  return os.environ.get(APPLIED_ENV, "system")


def _describe(glibc, huge_pages):
  library = "this is not glibc" if glibc is None else f"this is glibc {glibc[0]}.{glibc[1]}"
  return library + ("" if huge_pages else ", transparent huge pages are off")
