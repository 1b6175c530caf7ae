"""ResNet-32's architecture and the metrics, against hand counts and brute-force loops."""
import math
import numpy as np
import pytest
import torch

from visprior.models import create_model, num_params
from visprior.metrics import ece, per_class_accuracy, group_accuracy, summarize


def test_resnet32_parameter_count_by_hand():
    conv = 3 * 16 * 9 + 10 * 16 * 16 * 9 + (16 * 32 * 9 + 9 * 32 * 32 * 9) + (32 * 64 * 9 + 9 * 64 * 64 * 9)
    bn = 2 * (16 + 10 * 16 + 10 * 32 + 10 * 64)
    for c in (10, 100):
        assert num_params(create_model('resnet32', c)) == conv + bn + 64 * c + c
    assert f"{num_params(create_model('resnet32', 10)) / 1e6:.2f}" == '0.46'
    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in create_model('resnet32', 10).modules())
    assert n_conv == 31  # + 1 linear layer = 32 weighted layers


def test_heads():
    m = create_model('resnet32', 100, proj_dim=128).eval()
    x = torch.randn(3, 3, 32, 32)
    f = m.features(x)
    assert f.shape == (3, 64)
    assert torch.allclose(m(x), m.classifier(f))
    e = m.embed(x)
    assert e.shape == (3, 128) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(e, torch.nn.functional.normalize(m.proj(f), dim=1), atol=1e-6)
    with pytest.raises(ValueError, match='resnet32'):
        create_model('vgg', 10)


def _ece_loop(probs, y, n_bins=15):
    total = 0.0
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        members = [i for i in range(len(y)) if lo < probs[i].max() <= hi]
        if members:
            acc = np.mean([probs[i].argmax() == y[i] for i in members])
            conf = np.mean([probs[i].max() for i in members])
            total += len(members) / len(y) * abs(acc - conf)
    return total


def test_ece_against_loop():
    rng = np.random.default_rng(0)
    for k in (2, 10):
        p = rng.dirichlet(np.ones(k) * 0.5, 300)
        y = rng.integers(0, k, 300)
        assert math.isclose(ece(p, y), _ece_loop(p, y), abs_tol=1e-10)


def test_group_and_per_class_accuracy_against_loop():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 500)
    pred = np.where(rng.random(500) < 0.6, y, rng.integers(0, 6, 500))
    acc = per_class_accuracy(pred, y, 6)
    for c in range(6):
        assert math.isclose(acc[c], np.mean([pred[i] == c for i in range(500) if y[i] == c]))
    groups = {'many': np.array([0, 1]), 'medium': np.array([2, 3, 4]), 'few': np.array([5])}
    g = group_accuracy(acc, groups)
    assert math.isclose(g['medium'], (acc[2] + acc[3] + acc[4]) / 3)
    logits = torch.nn.functional.one_hot(torch.as_tensor(pred), 6).float()
    s = summarize(logits, torch.as_tensor(y), groups)
    assert math.isclose(s['top1'], 100 * np.mean(pred == y)) and math.isclose(s['few'], 100 * acc[5])
