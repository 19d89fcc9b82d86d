"""The project's own errors, and how every command line reports them.

A FeatexError is a problem the user can fix (data, a config, a run folder, a weights file)
and its message names the file or field, so a command line prints the message alone, with
no traceback. Any other exception is a bug and keeps its traceback.
"""

import sys

EXIT_STATUS = 2  # as argparse and absl exit on a usage error


class FeatexError(Exception):
  """Base of the errors whose message says what is wrong and where (file or field)."""


class ConfigError(FeatexError, ValueError):
  """A config field or command-line argument that cannot be used as given."""


def listing(headline, items, limit=20):
  """One message for many problems: the headline, then one item a line (the first `limit`);
  a single item stays on the headline's line."""
  items = list(items)
  if len(items) == 1:
    return f"{headline}: {items[0]}"
  shown = "".join(f"\n  {item}" for item in items[:limit])
  more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
  return f"{headline}:{shown}{more}"


def run_command(main, *args):
  """Run a command line's `main(*args)` and exit with its status; a FeatexError prints
  `error: <message>` on stderr and exits with EXIT_STATUS (one line per problem, no traceback)."""
  try:
    status = main(*args)
  except FeatexError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(EXIT_STATUS)
  sys.exit(status)
