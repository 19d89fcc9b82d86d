"""Problems with the data a user brought: each message names the file and what is wrong with it."""

from featex_jax.errors import FeatexError


class DataError(FeatexError, ValueError):
  """A file, folder or table that cannot be used as it is."""


class SkippedClipsWarning(UserWarning):
  """Bad clips were left out because the caller asked to skip them."""
