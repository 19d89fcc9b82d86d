"""Problems with the data a user brought: each message names the file and what is wrong with it."""
from featex_jax.errors import FeatexError


class DataError(FeatexError, ValueError):
  """A file, folder or table that cannot be used as it is."""


class SkippedClipsWarning(UserWarning):
  """Bad clips were left out because the caller asked to skip them."""


def listing(headline, items, limit=20):
  """One message for many problems: the headline, then one item a line (the first `limit`);
  a single item stays on the headline's line."""
  items = list(items)
  if len(items) == 1:
    return f"{headline}: {items[0]}"
  shown = "".join(f"\n  {item}" for item in items[:limit])
  more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
  return f"{headline}:{shown}{more}"
