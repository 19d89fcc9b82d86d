"""k-means scoring of embeddings: centres per section, anomaly scores, decisions.

Follows the authors' script (ssl4asd, main_statex+featex.py, the loop after "length
normalization" and the "create challenge submission files" block):
- embeddings are L2-normalised (`length_norm`);
- per (machine, section), sklearn KMeans with 16 clusters on the source-domain training
  embeddings, and the target-domain training embeddings as they are;
- score = min over those points of (1 - dot(embedding, point)). The k-means centres are
  used as sklearn returns them, NOT re-normalised (their norm is below 1), exactly as the
  reference does; for the unit-norm target points this is the cosine distance;
- an ensemble adds the members' scores ("for ensemble, replace '=' with '+='"); the mean
  is the same ranking and is the default here;
- decision = score > 90th percentile (np.percentile, linear interpolation) of the
  section's training-clip scores, all domains together.

Everything here is NumPy on host arrays: the network's part ends at the embeddings.
"""

import warnings

import numpy as np
from sklearn.cluster import KMeans

from featex_jax.data.errors import DataError
from featex_jax.errors import listing


def unit_rows(x):
  """Rows scaled to unit Euclidean norm (the reference's length_norm on the host); a zero or
  non-finite row is an error, not a NaN (unlike adacos.l2_normalize's epsilon inside the network)."""
  x = np.asarray(x)
  norms = np.linalg.norm(x, axis=-1, keepdims=True)
  bad = ~np.isfinite(norms[..., 0]) | (norms[..., 0] == 0)
  if np.any(bad):
    rows = np.flatnonzero(bad)
    raise ValueError(listing("cannot L2-normalise rows with a zero or non-finite norm", rows.tolist()))
  return x / norms


def check_embeddings(embeddings, file_names):
  """Raises naming every clip whose embedding has a NaN/Inf or is all zeros.

  A NaN embedding would otherwise turn into a NaN score and a silently wrong AUC.
  """
  embeddings = np.asarray(embeddings)
  if embeddings.ndim != 2 or len(embeddings) != len(file_names):
    raise ValueError(
      f"expected one embedding row per clip: {embeddings.shape} embeddings for {len(file_names)} file names"
    )
  non_finite = ~np.all(np.isfinite(embeddings), axis=1)
  zero = np.all(embeddings == 0, axis=1)
  problems = []
  if np.any(non_finite):
    names = [str(file_names[i]) for i in np.flatnonzero(non_finite)]
    problems.append(listing(f"{len(names)} embedding(s) contain NaN or Inf", names))
  if np.any(zero):
    names = [str(file_names[i]) for i in np.flatnonzero(zero)]
    problems.append(listing(f"{len(names)} embedding(s) are all zeros", names))
  if problems:
    raise DataError("; ".join(problems))


def fit_section_centres(source_train_emb, target_train_emb, n_clusters=16, n_init=10, seed=0, name="section"):
  """The points a section's clips are compared with: k-means centres + target embeddings.

  Rows 0..k-1 are the KMeans centres of the L2-normalised source-domain training
  embeddings (k = n_clusters, or the number of source clips if fewer, with a warning);
  the remaining rows are the L2-normalised target-domain training embeddings. `n_init`
  must stay 10 (sklearn's newer 'auto' runs one initialisation and changes the scores).
  `name` only labels warnings and errors.
  """
  source = _as_matrix(source_train_emb, f"{name}: source-domain training embeddings")
  target = _as_matrix(target_train_emb, f"{name}: target-domain training embeddings")
  if source.shape[1] != target.shape[1] and len(target) and len(source):
    raise ValueError(
      f"{name}: source embeddings have {source.shape[1]} dimensions, target embeddings {target.shape[1]}"
    )
  if len(source) == 0 and len(target) == 0:
    raise ValueError(f"{name}: no training embeddings, cannot build centres")
  parts = []
  if len(source) == 0:
    warnings.warn(
      f"{name}: no source-domain training clips; scoring against the "
      f"{len(target)} target-domain training embeddings only",
      stacklevel=2,
    )
  else:
    k = n_clusters
    if len(source) < n_clusters:
      k = len(source)
      warnings.warn(
        f"{name}: {len(source)} source-domain training clips, fewer than "
        f"{n_clusters} k-means clusters; using {k} clusters",
        stacklevel=2,
      )
    kmeans = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(unit_rows(source))
    parts.append(kmeans.cluster_centers_)
  if len(target):
    parts.append(unit_rows(target))
  return np.concatenate(parts, axis=0)


def anomaly_scores(embeddings, centres):
  """Smallest (1 - dot) between each L2-normalised embedding and any centre; higher = more anomalous."""
  embeddings = np.asarray(embeddings)
  if len(embeddings) == 0:
    return np.zeros((0,), dtype=np.result_type(embeddings.dtype, np.float32))
  similarity = unit_rows(embeddings) @ np.asarray(centres).T
  return 1.0 - np.max(similarity, axis=1)


def combine_scores(member_scores, reduce="mean"):
  """Ensemble score of several trained models: the mean (default) or sum of their scores."""
  stacked = np.stack([np.asarray(s) for s in member_scores])
  if reduce == "mean":
    return stacked.mean(axis=0)
  if reduce == "sum":
    return stacked.sum(axis=0)
  raise ValueError(f"ensemble reduce must be 'mean' or 'sum', got {reduce!r}")


def decision_threshold(train_scores, percentile=90.0):
  """The section's threshold: a percentile of its training clips' scores (reference: 90)."""
  train_scores = np.asarray(train_scores)
  if train_scores.size == 0:
    raise ValueError("no training scores to set a decision threshold from")
  if not np.all(np.isfinite(train_scores)):
    raise ValueError("training scores contain NaN or Inf; cannot set a decision threshold")
  return float(np.percentile(train_scores, q=percentile))


def decisions(scores, threshold):
  """1 (anomalous) where score > threshold, else 0: the reference's strict inequality."""
  return (np.asarray(scores) > threshold).astype(np.int64)


def _as_matrix(x, what):
  x = np.asarray(x)
  if x.ndim == 1 and x.size == 0:
    return x.reshape(0, 0)
  if x.ndim != 2:
    raise ValueError(f"{what}: expected a (clips, dims) matrix, got shape {x.shape}")
  return x
