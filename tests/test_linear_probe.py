"""LinearProbe: ridge on standardised features with an unpenalised intercept, checked against the closed form."""

import numpy as np
import pytest
import torch

from torchwm.eval import LinearProbe


def closed_form(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, scale, weights (D + 1, F))``: ``(Xs'Xs + ridge N I')^-1 Xs'y``, no penalty on the bias column."""
    mean, scale = x.mean(0), x.std(0) + 1e-8
    xs = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)
    reg = ridge * len(x) * np.eye(xs.shape[1])
    reg[-1, -1] = 0.0
    return mean, scale, np.linalg.solve(xs.T @ xs + reg, xs.T @ y)


@pytest.mark.parametrize("ridge", [1e-3, 0.5])
@pytest.mark.parametrize("n,d", [(300, 12), (40, 60)])  # more samples than features, and fewer
def test_matches_closed_form(ridge, n, d):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d) + rng.normal(size=d)
    y = rng.normal(size=(n, 3)) + x[:, :3]
    x_test = rng.normal(size=(50, d))
    mean, scale, w = closed_form(x, y, ridge)
    expected = (x_test - mean) / scale @ w[:-1] + w[-1]
    probe = LinearProbe(ridge).fit(x, y)
    np.testing.assert_allclose(probe.predict(x_test), expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(probe.regressor.coef_, w[:-1].T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(probe.regressor.intercept_, w[-1], rtol=1e-6, atol=1e-9)
    assert probe.predict(torch.from_numpy(x_test).float()).dtype == np.float64


def test_r2_of_a_linear_target():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(10, 2)), rng.normal(size=2)
    x_train, x_test = rng.normal(size=(500, 10)), rng.normal(size=(200, 10))
    probe = LinearProbe().fit(torch.from_numpy(x_train), x_train @ w + b)
    assert probe.r2(x_test, x_test @ w + b) > 0.99
    assert probe.r2(x_test, rng.normal(size=(200, 2))) < 0.05  # unrelated targets


def test_single_target_column():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0
    probe = LinearProbe(ridge=0.0).fit(x, y)
    assert probe.predict(x).shape == (100,)
    np.testing.assert_allclose(probe.predict(x), y, atol=1e-8)
    assert probe.r2(x, y) == pytest.approx(1.0)


def test_neighbour_probe_reads_a_bent_state_the_linear_probe_cannot():
    from torchwm.eval import NeighbourProbe

    rng = np.random.default_rng(3)
    angle = rng.uniform(-np.pi, np.pi, size=2000)
    z = np.stack([np.cos(2 * angle), np.sin(2 * angle)], 1)  # the angle, wound twice round a circle
    target = np.stack([np.sin(angle), np.cos(angle)], 1)  # ...read back as its sine and cosine: not linear in z
    train, test = slice(0, 1500), slice(1500, None)
    # z holds only 2 * angle, so the sign of (sin, cos) of the angle is lost: k-NN cannot beat chance either
    assert NeighbourProbe(10).fit(z[train], target[train]).r2(z[test], target[test]) < 0.1
    bent = np.stack([angle, 0.01 * rng.normal(size=2000)], 1)  # the angle itself: all there, but not as sin/cos
    linear = LinearProbe().fit(bent[train], target[train]).r2(bent[test], target[test])
    neighbours = NeighbourProbe(10).fit(bent[train], target[train])
    assert neighbours.r2(bent[test], target[test]) > 0.98 and linear < 0.5
    assert neighbours.predict(torch.from_numpy(bent[test]).float()).shape == (500, 2)
    assert neighbours.r2(bent[test], rng.normal(size=(500, 2))) < 0.05  # unrelated targets


def test_neighbour_probe_rejects_bad_k_and_too_few_samples():
    from torchwm.eval import NeighbourProbe

    with pytest.raises(ValueError, match="k=0"):
        NeighbourProbe(0)
    with pytest.raises(ValueError, match="fewer than k=10"):
        NeighbourProbe(10).fit(np.zeros((5, 2)), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="4 inputs but 3 targets"):
        NeighbourProbe(2).fit(np.zeros((4, 2)), np.zeros((3, 1)))
