"""What a data set holds: counts, durations and sample rates per machine / section / split / domain / label."""

from featex_jax.data import audio
from featex_jax.data import classes as classes_lib
from featex_jax.data.errors import DataError

_ROW_KEY = ("machine", "section", "split", "domain", "label")


def summarize(clips, class_table="reference"):
  """A JSON-able summary of `clips`; reads every header (no decoding), lists unreadable files.

  N is that of the class table training would build (data.class_table, default "reference").
  """
  rows, bad = {}, []
  for clip in clips:
    try:
      header = audio.read_header(clip.path)
    except DataError as e:
      bad.append(str(e))
      continue
    key = tuple(getattr(clip, k) for k in _ROW_KEY)
    row = rows.setdefault(
      key, {**dict(zip(_ROW_KEY, key)), "clips": 0, "duration_s": 0.0, "sample_rates": set(), "channels": set()}
    )
    row["clips"] += 1
    row["duration_s"] += header.duration
    row["sample_rates"].add(header.sample_rate)
    row["channels"].add(header.channels)
  ordered = [rows[k] for k in sorted(rows, key=lambda k: tuple("" if v is None else v for v in k))]
  for row in ordered:
    row["duration_s"] = round(row["duration_s"], 3)
    row["sample_rates"], row["channels"] = sorted(row["sample_rates"]), sorted(row["channels"])
  table_clips = classes_lib.table_clips(clips, class_table)
  table = classes_lib.ClassTable.from_clips(table_clips) if table_clips else None
  return {
    "roots": list(dict.fromkeys(c.root for c in clips)),
    "clips": len(clips),
    "machines": sorted({c.machine for c in clips}),
    "groups": table.n_groups if table else 0,
    "class_table": class_table,
    "classes": table.n_classes if table else 0,
    "class_names": table.class_names if table else [],
    "rows": ordered,
    "unreadable": bad,
  }


def format_table(summary):
  """The summary as an aligned text table."""
  header = ("machine", "section", "split", "domain", "label", "clips", "duration", "sample rates", "channels")
  lines = [header]
  for row in summary["rows"]:
    lines.append(
      tuple("-" if row[k] is None else str(row[k]) for k in _ROW_KEY)
      + (
        str(row["clips"]),
        _duration(row["duration_s"]),
        ",".join(map(str, row["sample_rates"])),
        ",".join(map(str, row["channels"])),
      )
    )
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
  total = sum(r["duration_s"] for r in summary["rows"])
  text.append(
    f"{summary['clips']} clips ({_duration(total)}) of {len(summary['machines'])} machine types; "
    f"{summary['groups']} (machine, section) groups; N = {summary['classes']} classes "
    f"(data.class_table={summary['class_table']})"
  )
  if summary["unreadable"]:
    text.append(f"{len(summary['unreadable'])} unreadable file(s):")
    text.extend("  " + problem for problem in summary["unreadable"])
  return "\n".join(text)


def _duration(seconds):
  hours, rest = divmod(round(seconds), 3600)
  return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
