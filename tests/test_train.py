"""The trainer: schedule, resume == no stop, settings guard."""
from pathlib import Path
import pytest
import torch

from visprior.data import cifar_lt, make_loaders
from visprior.models import create_model
from visprior.train import TrainConfig, create_method, fit, lr_factor


def test_step_schedule_matches_reference_rule():
    def ref(epoch, lr=0.1):  # Cao et al.'s adjust_learning_rate, 0-based epoch
        epoch += 1
        if epoch <= 5: return lr * epoch / 5
        if epoch > 180: return lr * 0.0001
        if epoch > 160: return lr * 0.01
        return lr
    cfg = TrainConfig()
    for e in range(200):
        for frac in (0.0, 0.99):
            assert abs(0.1 * lr_factor(e + frac, cfg) - ref(e)) < 1e-12


def test_cosine_schedule_is_monotone_after_warmup():
    cfg = TrainConfig(epochs=30, schedule='cosine')
    vals = [lr_factor(5 + i / 10, cfg) for i in range(250)]
    assert vals[0] == 1.0 and all(a >= b for a, b in zip(vals, vals[1:])) and vals[-1] < 0.01


def _run(ckpt=None, stop_after=None, epochs=4, amp=None):
    split = cifar_lt('synthetic', imb=4)
    torch.manual_seed(1)
    model = create_model('resnet20', split.num_classes)
    tr, te = make_loaders(split, batch_size=32, seed=1)
    cfg = TrainConfig(epochs=epochs, lr=0.1, warmup_epochs=1, schedule='step', eval_every=2, amp=amp)
    return (model, *fit(model, create_method('ce'), tr, te, cfg, split.groups, ckpt, stop_after, progress=False))


@pytest.mark.parametrize('amp', [False, None])
def test_resumed_run_finishes_where_uninterrupted_run_does(tmp_path, amp):
    m1, h1, logits1, _, s1 = _run(amp=amp)
    ck = tmp_path/'ckpt.pt'
    _, h_part, *_ = _run(ck, stop_after=1, amp=amp)    # killed after the first epoch
    assert len(h_part) == 1 and ck.exists()
    _, h_more, *_ = _run(ck, stop_after=3, amp=amp)    # killed again
    m2, h2, logits2, _, s2 = _run(ck, amp=amp)         # finished
    assert len(h2) == 4 and [r['epoch'] for r in h2] == [1, 2, 3, 4]
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(logits1, logits2)
    assert [r['train_loss'] for r in h1] == [r['train_loss'] for r in h2]
    assert s1['top1'] == s2['top1'] and 'top1' in h2[1] and 'top1' not in h2[0]


def test_resume_refuses_other_settings(tmp_path):
    _run(tmp_path/'ckpt.pt', stop_after=1)
    with pytest.raises(ValueError, match='other settings'):
        _run(tmp_path/'ckpt.pt', epochs=5)


def test_unknown_method():
    with pytest.raises(ValueError, match="method='nope'.*'ce'"):
        create_method('nope')
