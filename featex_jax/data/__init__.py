"""The DCASE data layer: finding, naming, labelling and loading clips; training classes.

No JAX here: the data layer is plain NumPy and runs on any host.
"""

from featex_jax.data.audio import Header
from featex_jax.data.audio import fit_length
from featex_jax.data.audio import load_audio
from featex_jax.data.audio import max_offset
from featex_jax.data.audio import random_offset
from featex_jax.data.audio import read_header
from featex_jax.data.audio import validate_clips
from featex_jax.data.classes import ClassKey
from featex_jax.data.classes import ClassTable
from featex_jax.data.classes import training_clips
from featex_jax.data.errors import DataError
from featex_jax.data.errors import SkippedClipsWarning
from featex_jax.data.layout import Clip
from featex_jax.data.layout import discover

__all__ = [
  "Clip",
  "ClassKey",
  "ClassTable",
  "DataError",
  "Header",
  "SkippedClipsWarning",
  "discover",
  "fit_length",
  "load_audio",
  "max_offset",
  "random_offset",
  "read_header",
  "training_clips",
  "validate_clips",
]
