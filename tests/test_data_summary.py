"""`python -m featex_jax.data` reports exactly what a data set holds."""

import collections
import csv
import json
import pathlib
import subprocess
import sys

from audio_files import make_tree

from featex_jax.data import __main__ as cli

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(*args):
  return subprocess.run(
    [sys.executable, "-m", "featex_jax.data", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=120
  )


def test_json_counts_equal_the_manifest(dcase_sample):
  root = dcase_sample
  result = run(root, "--json")
  assert result.returncode == 0, result.stderr
  summary = json.loads(result.stdout)
  with open(root / "manifest.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  expected = collections.defaultdict(lambda: {"clips": 0, "duration_s": 0.0, "sample_rates": set(), "channels": set()})
  for row in rows:
    cell = expected[(row["machine"], row["section"], row["split"], row["domain"], row["label"])]
    cell["clips"] += 1
    cell["duration_s"] += float(row["duration_s"])
    cell["sample_rates"].add(int(row["sample_rate"]))
    cell["channels"].add(int(row["channels"]))
  got = {(r["machine"], r["section"], r["split"], r["domain"], r["label"]): r for r in summary["rows"]}
  assert set(got) == set(expected)
  for key, cell in expected.items():
    assert got[key]["clips"] == cell["clips"], key
    assert abs(got[key]["duration_s"] - cell["duration_s"]) < 1e-3, key
    assert got[key]["sample_rates"] == sorted(cell["sample_rates"]) and got[key]["channels"] == sorted(cell["channels"])
  assert summary["clips"] == len(rows)
  assert summary["machines"] == sorted({r["machine"] for r in rows})
  # The reference's table: the keys of the training and the (development, labelled) test clips.
  keys = {(r["machine"], r["section"], r["attributes"], r["domain"]) for r in rows}
  assert summary["class_table"] == "reference"
  assert summary["classes"] == len(keys) and len(summary["class_names"]) == len(keys)
  assert summary["groups"] == len({(r["machine"], r["section"]) for r in rows})
  assert summary["unreadable"] == []


def test_table_and_errors(dcase_sample, tmp_path, capsys):
  assert cli.main([str(dcase_sample)]) == 0
  table = capsys.readouterr().out
  assert table.splitlines()[0].split() == [
    "machine",
    "section",
    "split",
    "domain",
    "label",
    "clips",
    "duration",
    "sample",
    "rates",
    "channels",
  ]
  assert "valve 00 test target anomaly 3 0:00:30 16000 1".split() in [line.split() for line in table.splitlines()]
  assert table.rstrip().endswith("7 (machine, section) groups; N = 26 classes (data.class_table=reference)")

  make_tree(
    tmp_path / "data", ["fan/train/section_00_source_train_normal_0000_a_1.wav", "fan/test/section_00_0000.wav"]
  )
  (tmp_path / "data" / "fan" / "test" / "section_00_0001.wav").write_bytes(b"")
  assert cli.main([str(tmp_path / "data")]) == 1  # unreadable files are listed and fail the command
  out = capsys.readouterr().out
  assert "fan 00 test - - 1 0:00:00 16000 1".split() in [line.split() for line in out.splitlines()]
  assert f"1 unreadable file(s):\n  {tmp_path / 'data' / 'fan' / 'test' / 'section_00_0001.wav'}: empty file" in out

  result = run(tmp_path / "nothing-here")
  assert result.returncode == 2 and result.stderr.startswith("error: ")
  assert "nothing-here: data root is not a folder" in result.stderr
  assert "Traceback" not in result.stderr
