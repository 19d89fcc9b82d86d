"""k-means scoring against direct sklearn/NumPy computations of the reference's steps."""

import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans

from featex_jax import detector


def _embeddings(rng, n, dims=8):
  return rng.normal(size=(n, dims)).astype(np.float32)


def test_unit_rows_have_unit_norm_and_the_same_direction():
  x = np.random.default_rng(0).normal(size=(5, 7))
  y = detector.unit_rows(x)
  np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-12)
  np.testing.assert_allclose(y * np.linalg.norm(x, axis=1, keepdims=True), x, rtol=1e-12)


def test_unit_rows_rejects_a_zero_row():
  x = np.ones((3, 4))
  x[1] = 0
  with pytest.raises(ValueError, match="rows with a zero or non-finite norm: 1$"):
    detector.unit_rows(x)


def test_centres_are_sklearn_kmeans_on_normalised_source_then_normalised_target():
  rng = np.random.default_rng(1)
  source, target = _embeddings(rng, 60), _embeddings(rng, 4)
  centres = detector.fit_section_centres(source, target, n_clusters=5, n_init=10, seed=3)
  normalise = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
  expected = KMeans(n_clusters=5, n_init=10, random_state=3).fit(normalise(source)).cluster_centers_
  assert centres.shape == (5 + 4, 8)
  np.testing.assert_allclose(centres[:5], expected, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(centres[5:], normalise(target), rtol=1e-6)


def test_scores_are_the_smallest_one_minus_dot_to_any_centre():
  rng = np.random.default_rng(2)
  source, target, test = _embeddings(rng, 40), _embeddings(rng, 3), _embeddings(rng, 25)
  centres = detector.fit_section_centres(source, target, n_clusters=4)
  scores = detector.anomaly_scores(test, centres)
  # The reference's form: min over target points, min over (un-normalised) k-means centres.
  unit = test / np.linalg.norm(test, axis=1, keepdims=True)
  target_unit = target / np.linalg.norm(target, axis=1, keepdims=True)
  expected = np.minimum(np.min(1 - unit @ target_unit.T, axis=1), np.min(1 - unit @ centres[:4].T, axis=1))
  np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-6)
  # A target-domain training clip is one of the points: its score is 0.
  np.testing.assert_allclose(detector.anomaly_scores(target, centres), 0.0, atol=1e-6)


def test_scores_do_not_depend_on_the_embedding_scale():
  rng = np.random.default_rng(3)
  centres = detector.fit_section_centres(_embeddings(rng, 30), _embeddings(rng, 2), n_clusters=3)
  test = _embeddings(rng, 6)
  np.testing.assert_allclose(
    detector.anomaly_scores(7.5 * test, centres), detector.anomaly_scores(test, centres), rtol=1e-5, atol=1e-6
  )


def test_fewer_source_clips_than_clusters_uses_every_clip_as_a_centre_with_a_warning():
  rng = np.random.default_rng(4)
  source, target = _embeddings(rng, 3), _embeddings(rng, 2)
  with pytest.warns(UserWarning, match="fan section 00: 3 source-domain training clips"):
    centres = detector.fit_section_centres(source, target, n_clusters=16, name="fan section 00")
  unit = source / np.linalg.norm(source, axis=1, keepdims=True)
  found = sorted(map(tuple, np.round(centres[:3], 5)))
  assert found == sorted(map(tuple, np.round(unit, 5)))


def test_no_source_clips_scores_against_target_only_and_no_clips_is_an_error():
  rng = np.random.default_rng(5)
  target = _embeddings(rng, 2)
  with pytest.warns(UserWarning, match="no source-domain training clips"):
    centres = detector.fit_section_centres(np.zeros((0, 8)), target)
  assert centres.shape == (2, 8)
  with pytest.raises(ValueError, match="pump: no training embeddings"):
    detector.fit_section_centres(np.zeros((0, 8)), np.zeros((0, 8)), name="pump")


def test_sixteen_clusters_by_default_without_warning():
  rng = np.random.default_rng(6)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    centres = detector.fit_section_centres(_embeddings(rng, 50), _embeddings(rng, 1))
  assert centres.shape == (17, 8)


def test_check_embeddings_names_the_nan_and_zero_clips():
  emb = np.ones((4, 3), dtype=np.float32)
  emb[1, 2] = np.nan
  emb[3] = 0
  names = ["a.wav", "b.wav", "c.wav", "d.wav"]
  with pytest.raises(ValueError, match=r"NaN or Inf: b\.wav.*all zeros: d\.wav"):
    detector.check_embeddings(emb, names)
  detector.check_embeddings(emb[[0, 2]], ["a.wav", "c.wav"])  # clean: no error
  with pytest.raises(ValueError, match="one embedding row per clip"):
    detector.check_embeddings(emb, names[:2])


def test_threshold_is_numpy_percentile_and_decisions_use_strict_greater():
  train = np.random.default_rng(7).normal(size=101)
  threshold = detector.decision_threshold(train, 90)
  assert threshold == np.percentile(train, 90)
  assert detector.decision_threshold(np.arange(11.0)) == 9.0  # linear interpolation
  np.testing.assert_array_equal(detector.decisions([8.9, 9.0, 9.1], 9.0), [0, 0, 1])
  with pytest.raises(ValueError, match="NaN"):
    detector.decision_threshold([0.1, np.nan])
  with pytest.raises(ValueError, match="no training scores"):
    detector.decision_threshold([])


def test_ensemble_mean_and_sum():
  a, b = np.array([0.1, 0.4]), np.array([0.3, 0.2])
  np.testing.assert_allclose(detector.combine_scores([a, b]), [0.2, 0.3])
  np.testing.assert_allclose(detector.combine_scores([a, b], "sum"), [0.4, 0.6])
  with pytest.raises(ValueError, match="'mean' or 'sum'"):
    detector.combine_scores([a, b], "max")
