"""The baselines' losses at their published settings, against values worked out by hand; cRT and tau-norm on toys."""
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visprior.losses import (balanced_space_targets, cb_weights, drw_epoch, focal_loss, kd_loss, ldam_loss,
                             ldam_margins, log_prior, logit_adjusted_ce, select_tau, soft_ce_weighted, tau_normalize)
from visprior.train import TrainConfig, create_method
from visprior.experiment import run_experiment

TINY = dict(dataset='synthetic', imb=5, epochs=2, batch_size=32, lr=0.05, warmup_epochs=1, schedule='cosine', method='ce',
            init='scratch', alpha=0.1, alpha_power=0.0)


def _ce(z, y):  # -log softmax(z)_y, by hand
    return -z[y] + math.log(sum(math.exp(v) for v in z))


def test_ldam_margins_and_loss_published_settings():
    counts = [500, 100, 5]
    raw = [n ** -0.25 for n in counts]
    want = [0.5 * r / max(raw) for r in raw]                 # largest margin 0.5
    m = ldam_margins(counts)
    assert torch.allclose(m, torch.tensor(want), atol=1e-6) and abs(float(m[2]) - 0.5) < 1e-7
    z = [0.3, -0.1, 0.2]                                    # cosine logits; true class 2 (the rarest)
    hand = _ce([30 * 0.3, 30 * -0.1, 30 * (0.2 - want[2])], 2)  # s = 30
    assert abs(float(ldam_loss(torch.tensor([z]), torch.tensor([2]), m)) - hand) < 1e-4


def test_cb_weights_published_beta():
    counts, beta = [500, 20], 0.9999
    eff = [(1 - beta ** n) / (1 - beta) for n in counts]    # effective numbers
    w = [1 / e for e in eff]; w = [2 * v / sum(w) for v in w]
    assert torch.allclose(cb_weights(counts), torch.tensor(w), atol=1e-6)
    assert 20 < float(cb_weights(counts)[1] / cb_weights(counts)[0]) < 25  # ~500/20 at beta near 1


def test_drw_switches_at_80_percent():
    assert drw_epoch(TrainConfig(epochs=200)) == 160 and drw_epoch(TrainConfig(epochs=30)) == 24


def test_logit_adjustment_offset_and_posthoc():
    counts = [300, 100]
    lp = log_prior(counts)
    assert torch.allclose(lp, torch.tensor([math.log(.75), math.log(.25)]))
    z = [1.0, 0.5]
    hand = _ce([1.0 + math.log(.75), 0.5 + math.log(.25)], 1)
    assert abs(float(logit_adjusted_ce(torch.tensor([z]), torch.tensor([1]), lp)) - hand) < 1e-6
    with pytest.raises(ValueError, match='zeros'):
        log_prior([3, 0])


def test_focal_gamma_1():
    z, y = [2.0, 0.0, -1.0], 1
    ce = _ce(z, y); p = math.exp(-ce)
    assert abs(float(focal_loss(torch.tensor([z]), torch.tensor([y]))) - (1 - p) * ce) < 1e-6


def test_kd_hinton():
    s, t, y, T, a = [1.0, 0.0, 0.5], [0.0, 2.0, 0.0], 0, 2.0, 0.5
    ps = [math.exp(v / T) for v in s]; ps = [v / sum(ps) for v in ps]
    pt = [math.exp(v / T) for v in t]; pt = [v / sum(pt) for v in pt]
    kl = sum(q * math.log(q / r) for q, r in zip(pt, ps))
    hand = (1 - a) * _ce(s, y) + a * T * T * kl
    assert abs(float(kd_loss(torch.tensor([s]), torch.tensor([t]), torch.tensor([y]), T, a)) - hand) < 1e-5


def test_label_smoothing_is_flat_prior():
    z, y, eps = torch.tensor([[1.0, 0.2, -0.3, 0.0]]), torch.tensor([2]), 0.1
    target = torch.full((1, 4), eps / 4); target[0, 2] += 1 - eps
    m = create_method('label_smoothing', ls_eps=eps)
    assert torch.allclose(m.loss(z, y), soft_ce_weighted(z, target))


def test_prior_in_balanced_space_is_stationary_at_the_target():
    torch.manual_seed(0)
    t = torch.softmax(torch.randn(5, 6), 1); pi = torch.softmax(torch.randn(6), 0)
    z = torch.log(t).requires_grad_(True)
    soft_ce_weighted(z + torch.log(pi), balanced_space_targets(t, torch.log(pi))).backward()
    assert z.grad.abs().max() < 1e-6


def test_tau_norm_toy_classifier():
    W = torch.tensor([[4.0, 0.0], [0.0, 1.0]])              # head class 0 has a 4x longer weight vector
    assert torch.allclose(tau_normalize(W, 1.0).norm(dim=1), torch.ones(2))
    f = torch.tensor([[1.0, 0.2], [0.9, 0.1], [0.3, 1.0], [0.3, 0.9]]); y = [0, 0, 1, 1]
    tau, curve = select_tau(f, W, y)
    assert curve[0.0] == 50.0 and curve[tau] == 100.0 and tau == 0.3


def test_crt_retrains_only_the_classifier(tmp_path):
    kw = {**TINY, 'out_dir': str(tmp_path), 'crt_epochs': 2}
    run_experiment({**kw, 'method': 'ce'}, progress=False)
    m = run_experiment({**kw, 'method': 'crt'}, progress=False)
    ce = torch.load(tmp_path/'synthetic-lt5-ce-s0'/'model.pt', weights_only=True)
    crt = torch.load(tmp_path/'synthetic-lt5-crt-s0'/'model.pt', weights_only=True)
    for k in ce:  # backbone weights and BatchNorm statistics untouched
        if not k.startswith('classifier.'): assert torch.equal(ce[k], crt[k]), k
    assert not torch.equal(ce['classifier.weight'], crt['classifier.weight'])
    assert m['budget']['trained_epochs'] == 2


def test_decoupled_method_needs_its_ce_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="method='ce'"):
        run_experiment({**TINY, 'out_dir': str(tmp_path), 'method': 'tau_norm'}, progress=False)


def test_posthoc_adjustment_shifts_by_log_prior(tmp_path):
    kw = {**TINY, 'out_dir': str(tmp_path)}
    run_experiment({**kw, 'method': 'ce'}, progress=False)
    from visprior.data import cifar_lt
    split = cifar_lt('synthetic', imb=5)
    m = create_method('logit_adjust_posthoc', split, ce_run=str(tmp_path/'synthetic-lt5-ce-s0'))
    z = torch.zeros(1, 10)
    assert torch.allclose(m.test_logits(z)[0], -log_prior(split.counts))
