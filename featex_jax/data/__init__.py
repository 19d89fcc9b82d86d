"""The DCASE data layer: finding, naming, labelling and loading clips; training classes.

No JAX here: the data layer is plain NumPy and runs on any host.
"""
from featex_jax.data.audio import Header, fit_length, load_audio, max_offset, random_offset, read_header, validate_clips
from featex_jax.data.classes import ClassKey, ClassTable, training_clips
from featex_jax.data.errors import DataError, SkippedClipsWarning
from featex_jax.data.layout import Clip, discover

__all__ = [
    "Clip", "ClassKey", "ClassTable", "DataError", "Header", "SkippedClipsWarning",
    "discover", "fit_length", "load_audio", "max_offset", "random_offset", "read_header", "training_clips",
    "validate_clips",
]
