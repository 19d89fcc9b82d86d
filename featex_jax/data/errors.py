"""Problems with the data a user brought: each message names the file and what is wrong with it."""


class DataError(ValueError):
  """A file, folder or table that cannot be used as it is."""


class SilentClipWarning(UserWarning):
  """A clip whose samples are all zero: readable, but probably a recording fault."""


class SkippedClipsWarning(UserWarning):
  """Bad clips were left out because the caller asked to skip them."""


def listing(headline, items, limit=20):
  """One message for many problems: the headline, then one item a line (the first `limit`)."""
  items = list(items)
  shown = "".join(f"\n  {item}" for item in items[:limit])
  more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
  return f"{headline}:{shown}{more}"
