"""A sweep of the paper's comparisons: every (variant, seed) trained into its own run, each run
evaluated alone, each variant's seeds evaluated as an ensemble, and the tables written.

Layout under the sweep's work directory:
  <variant>/member_<k>/        one run (seed = config.seed + k): checkpoints, eval/results.json
  <variant>/eval/              the ensemble of the variant's runs (scores averaged)
  tables/<name>.{md,csv,json,png}
  .featex_cache/               the decoded audio, shared by every run
This is the layout `run_train.py --ensemble K` writes, so `run_eval.py --workdir <variant>`
evaluates the same ensemble. `sweep.json` beside each run and ensemble records what was done
(config with its data, checkpoint step, cost): a rerun skips what matches and resumes the rest (an
interrupted training continues from its last checkpoint).
"""

import dataclasses
import json
import pathlib
import time

import jax

from configs import variants as variants_lib
from featex_jax import checkpoint
from featex_jax import clip_sets
from featex_jax import configuration
from featex_jax import errors
from featex_jax import evaluate
from featex_jax import files
from featex_jax import paper_tables
from featex_jax import train as train_lib
from featex_jax.data import layout

RECORD = "sweep.json"
# Config fields that change neither the trained weights nor the scores.
_IRRELEVANT = (
  "train.checkpoint_every_steps",
  "train.keep_checkpoints",
  "train.log_every_steps",
  "train.ensemble_size",
  "data.prefetch_batches",
  "data.cache_dir",
  "data.generate_synthetic",
)
# ... nor the trained weights (training reads no test clip).
_NOT_TRAINING = ("eval.", "data.ground_truth")


class SweepError(errors.ConfigError):
  """The sweep's folder does not fit the sweep asked for."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One (variant, seed) run of a sweep."""

  variant: str
  member: int
  workdir: pathlib.Path
  config: object

  @property
  def name(self):
    return f"{self.variant}/member_{self.member}"


def plan(dataset, variants, seeds, workdir, overrides=None, data_dirs=None, ground_truth=None):
  """The runs of a sweep: each variant's config with the overrides and the command line's data
  (configuration.apply_command_line), seeds seed..seed+K-1.

  Data paths are made absolute, so a rerun from another folder is the same sweep; all runs
  share one audio cache (<workdir>/.featex_cache) unless the config names one.
  """
  if seeds < 1:
    raise SweepError(f"--seeds must be at least 1, got {seeds}")
  workdir = pathlib.Path(workdir)
  runs = []
  for variant in variants:
    config = variants_lib.variant_config(variant, dataset)
    config.update_from_flattened_dict(dict(overrides or {}))
    config = configuration.apply_command_line(config, data_dirs, ground_truth)
    config.data.roots = tuple(str(pathlib.Path(root).absolute()) for root in config.data.roots)
    if config.data.ground_truth:
      config.data.ground_truth = str(pathlib.Path(config.data.ground_truth).absolute())
    if not config.data.cache_dir:
      config.data.cache_dir = str(workdir.absolute() / ".featex_cache")
    extra = sorted(
      p.name
      for p in (workdir / variant).glob("member_*")
      if not p.name[len("member_") :].isdigit() or int(p.name[len("member_") :]) >= seeds
    )
    if extra:
      raise SweepError(
        f"{workdir / variant} holds {', '.join(extra)} beyond --seeds {seeds}: the ensemble would "
        "not match the table; ask for more seeds or use another --workdir"
      )
    for k in range(seeds):
      member = config.copy_and_resolve_references()
      member.seed = config.seed + k
      runs.append(Run(variant, k, workdir / variant / f"member_{k}", member))
  return runs


def _read_record(folder):
  path = pathlib.Path(folder) / RECORD
  return json.loads(path.read_text()) if path.is_file() else None


def _same_config(saved, config, also_ignored=()):
  changed = configuration.differences(saved, configuration.to_dict(config))
  return not [name for name in changed if not name.startswith(_IRRELEVANT + tuple(also_ignored))]


def _is_trained(run, record):
  return (
    record is not None
    and _same_config(record["config"], run.config, _NOT_TRAINING)
    and record.get("trained_step") is not None
    and record["trained_step"] == checkpoint.latest_step(run.workdir)
  )


def _is_evaluated(run, record):
  return (
    _is_trained(run, record)
    and _same_config(record["config"], run.config)
    and record.get("evaluated_step") == record["trained_step"]
    and (run.workdir / "eval" / "results.json").is_file()
  )


def _train(run, record, progress):
  """Train (or resume) one run; a resumed run's record adds this invocation's time and clips to
  the earlier ones (train.train refuses a checkpoint of another config or data)."""
  start = checkpoint.latest_step(run.workdir) or 0
  started = time.perf_counter()
  state = train_lib.train(run.config, run.workdir, progress=progress)
  seconds = time.perf_counter() - started
  steps = int(state.step) - start
  earlier = record.get("train") if record is not None and start > 0 else None
  train_cost = earlier or {"seconds": 0.0, "steps": 0, "clips": 0}
  return {
    "config": configuration.to_dict(run.config),
    "trained_step": int(state.step),
    "train": {
      "seconds": train_cost["seconds"] + seconds,
      "steps": train_cost["steps"] + steps,
      "clips": train_cost["clips"] + steps * run.config.train.batch_size,
    },
  }


def _evaluate(workdir, progress):
  """run_eval's evaluation of one run or of an ensemble folder (data and ground truth from the
  runs' configs); returns (checkpoint steps, seconds)."""
  started = time.perf_counter()
  evaluate.evaluate_runs([workdir], progress=progress)
  seconds = time.perf_counter() - started
  results = json.loads((pathlib.Path(workdir) / "eval" / "results.json").read_text())
  return [m["checkpoint_step"] for m in results["metadata"]["members"]], seconds


def run(runs, table_name="table", progress=True, log=print):
  """Train and evaluate every run, evaluate the ensembles, write the tables; returns the table dict.

  Every process trains (one run after another, on all devices of every host). Evaluation is
  single-host: in a multi-process job the command stops after training, and the same command
  without the multi-host flags evaluates and writes the tables (it skips the trained runs).
  """
  single_process = jax.process_count() == 1
  is_main = jax.process_index() == 0
  log = log if is_main else (lambda _: None)
  for i, r in enumerate(runs, start=1):
    record = _read_record(r.workdir)
    if _is_evaluated(r, record):
      log(f"[{i}/{len(runs)}] {r.name}: trained and evaluated, skipped")
      continue
    if not _is_trained(r, record):
      log(f"[{i}/{len(runs)}] {r.name}: training (seed {r.config.seed})")
      record = _train(r, record, progress)
      if is_main:
        files.write_json(r.workdir / RECORD, record)
    if single_process:
      log(f"[{i}/{len(runs)}] {r.name}: evaluating")
      steps, seconds = _evaluate(r.workdir, progress)
      record.update(config=configuration.to_dict(r.config), evaluated_step=steps[0], eval={"seconds": seconds})
      files.write_json(r.workdir / RECORD, record)
  if not single_process:
    log(
      "Multi-host training done. Evaluation is single-host: run the same command on one host without "
      "--distributed/--coordinator_address/--num_processes/--process_id to evaluate and write the tables."
    )
    return None
  _evaluate_ensembles(runs, progress, log)
  return write_tables(runs, table_name, log)


def _evaluate_ensembles(runs, progress, log):
  """Each variant's runs as one ensemble (run_eval --workdir <variant>), unless already done."""
  for variant in dict.fromkeys(r.variant for r in runs):
    members = [r for r in runs if r.variant == variant]
    folder = members[0].workdir.parent
    done = {
      "members": [str(r.workdir.absolute()) for r in members],
      "steps": [_read_record(r.workdir)["trained_step"] for r in members],
    }
    record = _read_record(folder)
    if (
      record is not None
      and {k: record.get(k) for k in done} == done
      and _same_config(record["config"], members[0].config)
      and (folder / "eval" / "results.json").is_file()
    ):
      log(f"{variant}: ensemble of {len(members)} evaluated, skipped")
      continue
    log(f"{variant}: evaluating the ensemble of {len(members)}")
    _, seconds = _evaluate(folder, progress)
    files.write_json(
      folder / RECORD, dict(done, config=configuration.to_dict(members[0].config), eval={"seconds": seconds})
    )


def write_tables(runs, table_name, log=print):
  """The tables of the evaluated runs and ensembles, into <workdir>/tables/; returns the table dict.

  Each run's figures come from its eval/results.json, which run_eval.py writes the same way;
  the split of each section from its test file names (paper_tables.section_split).
  """
  config = runs[0].config
  out = runs[0].workdir.parent.parent / "tables"
  test_clips = [c for c in layout.discover(clip_sets.data_roots(config)) if c.split == "test"]
  splits = paper_tables.section_splits(test_clips)
  variants = list(dict.fromkeys(r.variant for r in runs))
  folders = {r.variant: r.workdir.parent for r in runs}
  figures = {v: [] for v in variants}
  run_costs = []
  for r in runs:
    record = _read_record(r.workdir)
    figures[r.variant].append(paper_tables.run_figures(_results(r.workdir), splits))
    run_costs.append(
      {
        "variant": r.variant,
        "member": r.member,
        "seed": r.config.seed,
        "train_seconds": record["train"]["seconds"],
        "train_clips": record["train"]["clips"],
        "eval_seconds": record["eval"]["seconds"],
      }
    )
  ensembles = {v: paper_tables.run_figures(_results(folders[v]), splits) for v in variants}
  ensemble_costs = [{"variant": v, "eval_seconds": _read_record(folders[v])["eval"]["seconds"]} for v in variants]
  table = paper_tables.build(
    config.dataset, variants, variants_lib.TITLES, figures, ensembles, seeds=max(r.member for r in runs) + 1
  )
  table["runs"] = [
    {
      "variant": r.variant,
      "member": r.member,
      "seed": r.config.seed,
      "workdir": str(r.workdir),
      "figures": figures[r.variant][r.member],
    }
    for r in runs
  ]
  table["ensembles"] = {v: {"workdir": str(folders[v]), "figures": ensembles[v]} for v in variants}
  devices = jax.devices()
  cost = paper_tables.cost_summary(
    run_costs, ensemble_costs, f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform})"
  )
  markdown = paper_tables.write_all(out, table_name, table, cost)
  log(markdown)
  log(f"Tables in {out}: {table_name}.md, .csv, .json, .png")
  return table


def _results(folder):
  return json.loads((pathlib.Path(folder) / "eval" / "results.json").read_text())
