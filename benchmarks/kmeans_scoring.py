"""Time of the scoring stage at DCASE2023 scale: k-means centres, anomaly scores, metrics.

  python benchmarks/kmeans_scoring.py [--sections 14] [--source 990] [--target 10] [--test 200]

Everything after the embeddings (NumPy/sklearn on the host): per section, KMeans(16,
n_init=10) on the source training embeddings, scores of training and test clips, the
threshold and the official metrics. Embeddings are random 256-d clusters (the time does
not depend on what they mean).
"""

import time

import harness  # noqa: F401  (puts the checkout on sys.path)
import numpy as np


def clustered_embeddings(rng, n, dim=256, clusters=8):
  centres = rng.standard_normal((clusters, dim))
  return centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dim))


def main():
  p = harness.parser(__doc__.split("\n\n")[0])
  p.add_argument("--sections", type=int, default=14, help="(machine, section) groups: 14 for DCASE2023")
  p.add_argument("--source", type=int, default=990, help="source-domain training clips per section")
  p.add_argument("--target", type=int, default=10, help="target-domain training clips per section")
  p.add_argument("--test", type=int, default=200, help="test clips per section")
  args = p.parse_args()
  from featex_jax import detector
  from featex_jax import results

  rng = np.random.default_rng(0)
  timings = {"kmeans_s": 0.0, "scores_s": 0.0}
  sections = []
  start = time.perf_counter()
  for s in range(args.sections):
    train = clustered_embeddings(rng, args.source + args.target)
    test = clustered_embeddings(rng, args.test) + 0.3 * rng.standard_normal((args.test, 256))
    t0 = time.perf_counter()
    centres = detector.fit_section_centres(train[: args.source], train[args.source :])
    t1 = time.perf_counter()
    threshold = detector.decision_threshold(detector.anomaly_scores(train, centres))
    test_scores = detector.anomaly_scores(test, centres)
    timings["kmeans_s"] += t1 - t0
    timings["scores_s"] += time.perf_counter() - t1
    labels = np.arange(args.test) % 2 == 0
    sections.append(
      results.SectionScores(
        f"m{s}",
        0,
        [f"c{i}.wav" for i in range(args.test)],
        test_scores,
        detector.decisions(test_scores, threshold),
        labels,
        np.arange(args.test) % 4 < 2,
        threshold,
      )
    )
  t0 = time.perf_counter()
  results.compute(sections, ci95=False)
  timings["metrics_s"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  results.compute(sections, ci95=True)
  timings["metrics_with_ci95_s"] = time.perf_counter() - t0
  timings["total_s"] = time.perf_counter() - start
  row = {k: round(v, 2) for k, v in timings.items()}
  harness.print_table([row], list(row))
  record = {
    "benchmark": "kmeans_scoring",
    "command": "benchmarks/kmeans_scoring.py",
    **harness.machine(),
    "note": args.note,
    "sections": args.sections,
    "source": args.source,
    "target": args.target,
    "test": args.test,
    "rows": [row],
  }
  harness.append_record(args.json, record)


if __name__ == "__main__":
  main()
