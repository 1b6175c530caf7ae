"""Local Aggregation and the prior against brute-force versions on tiny inputs."""
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visprior import la as LA
from visprior.data import cifar_lt, lt_split, synthetic_cifar
from visprior.prior import instance_targets, soft_targets, soft_ce


def _rand_sphere(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1)


def test_bank_update_matches_formula_for_any_momentum():
    for m in (0.0, 0.5, 0.9):
        bank = LA.MemoryBank(20, 6, momentum=m, seed=2).double()
        old = bank.bank.clone()
        idx, v = torch.tensor([7, 0, 19]), _rand_sphere(3, 6, 1)
        bank.update(idx, v)
        for r, i in enumerate(idx.tolist()):
            w = m * old[i] + (1 - m) * v[r]
            assert torch.allclose(bank.bank[i], w / w.norm())
        rest = [i for i in range(20) if i not in idx.tolist()]
        assert torch.equal(bank.bank[rest], old[rest])


def test_ir_loss_matches_loop():
    bank, v, idx = _rand_sphere(25, 5, 3), _rand_sphere(4, 5, 4), torch.tensor([1, 5, 24, 5])
    ref = 0.0
    for b in range(4):
        num = math.exp(float(v[b] @ bank[idx[b]]) / 0.07)
        den = sum(math.exp(float(v[b] @ bank[j]) / 0.07) for j in range(25))
        ref -= math.log(num / den) / 4
    assert math.isclose(LA.ir_loss(v, bank, idx).item(), ref, rel_tol=1e-9)


@pytest.mark.parametrize('k', [1, 5, 30])
def test_la_loss_matches_loop(k):
    bank, v, idx = _rand_sphere(30, 6, 5), _rand_sphere(6, 6, 6), torch.tensor([0, 3, 9, 12, 29, 3])
    labels = torch.randint(0, 4, (2, 30), generator=torch.Generator().manual_seed(7))
    _, back = LA.knn(v, bank, k, backend='faiss')
    ref = 0.0
    for b in range(6):
        p = {j: math.exp(float(v[b] @ bank[j]) / 0.07) for j in range(30)}
        B = sorted(p, key=p.get, reverse=True)[:k]
        close = [j for j in B if any(labels[h, j] == labels[h, idx[b]] for h in range(2))]
        ref -= math.log(sum(p[j] for j in close) / sum(p[j] for j in B) + 1e-7) / 6
    assert math.isclose(LA.la_loss(v, bank, idx, labels, back).item(), ref, rel_tol=1e-7)


def test_faiss_knn_and_kmeans_against_torch():
    keys, q = _rand_sphere(500, 32, 8).float(), _rand_sphere(20, 32, 9).float()
    s, i = LA.knn(q, keys, 15)
    bs, bi = (q @ keys.T).topk(15, dim=1)
    assert torch.equal(i, bi) and torch.allclose(s, bs, atol=1e-5)
    x = _rand_sphere(400, 16, 10).float()
    labels = LA.kmeans_labels(x, 10, n_runs=2, seed=3)
    assert labels.shape == (2, 400) and not torch.equal(labels[0], labels[1])  # different seeds, different clusterings
    # each point's cluster is its nearest centroid (centroids recomputed from the assignment, brute force)
    for h in range(2):
        cents = torch.stack([x[labels[h] == c].mean(0) for c in labels[h].unique()])
        nearest = torch.cdist(x, cents).argmin(1)
        agree = (labels[h].unique()[nearest] == labels[h]).float().mean()
        assert agree > 0.97  # faiss assigns to the centroids of its last iteration; a few points may sit on a border


def test_la_never_sees_labels_and_reclusters_every_epoch(monkeypatch):
    data = synthetic_cifar(n_train=32, n_test=4)  # 320 images: N divides the batch size 64
    split = lt_split(data, 1)
    shuffled = lt_split(data, 1)
    shuffled.y_train = np.random.default_rng(0).permutation(shuffled.y_train)
    calls = []
    real = LA.kmeans_labels
    monkeypatch.setattr(LA, 'kmeans_labels', lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = LA.LAConfig(epochs=4, ir_epochs=1, k=32, n_clusters=5, n_kmeans=2, batch_size=64, knn_every=10,
                      model='resnet20')
    a = LA.fit_la(split, cfg, progress=False)
    assert len(calls) == 3  # one re-clustering per LA epoch
    b = LA.fit_la(shuffled, cfg, progress=False)
    assert torch.equal(a.bank.bank, b.bank.bank)  # labels cannot change what LA learns
    assert int(a.loader.y.abs().sum()) == 0


def test_soft_targets_properties():
    S = _rand_sphere(6, 4, 11) @ _rand_sphere(6, 4, 11).T
    counts = np.array([50, 40, 20, 10, 5, 1])
    for alpha, T, p in [(0.0, 0.1, 0), (0.3, 0.05, 0), (0.5, 1.0, 1.0)]:
        Q = soft_targets(S, alpha, T, counts, p)
        a = alpha * (counts / 50) ** p
        assert torch.allclose(Q.sum(1), torch.ones(6, dtype=torch.float64))
        assert torch.allclose(Q.diagonal(), torch.as_tensor(1 - a))
        for c in range(6):
            others = [j for j in range(6) if j != c]
            w = torch.exp(S[c, others] / T)
            assert torch.allclose(Q[c, others], torch.as_tensor(a[c]) * w / w.sum())


def test_instance_targets_with_duplicates_exclude_only_self():
    emb = F.normalize(torch.tensor([[1., 0], [1., 0], [0, 1.], [0.1, 1.]]), dim=1)  # images 0 and 1 are identical
    P = instance_targets(emb, np.array([0, 1, 2, 2]), 3, k=1, alpha=1.0)
    assert P[0].tolist() == [0, 1, 0] and P[1].tolist() == [1, 0, 0]  # each other's nearest neighbour


def test_soft_ce_is_cross_entropy_for_one_hot():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 6, 3, 3, 1])
    assert torch.allclose(soft_ce(logits, F.one_hot(y, 7).float()), F.cross_entropy(logits, y))


def test_validation_split_is_disjoint(real_cifar100):
    s = lt_split(real_cifar100, 100, val_per_class=20)
    assert not set(s.val_idx) & set(s.train_idx)
    counts = np.bincount(s.y_val, minlength=100)
    assert counts[0] == 0 and (counts[1:] == 20).all()  # class 0 keeps all 500 images at rho=100
    s10 = lt_split(real_cifar100, 10, val_per_class=20)
    expected = np.minimum(20, 500 - s10.counts)  # a class can only give what the subset left out
    assert np.array_equal(np.bincount(s10.y_val, minlength=100), expected) and expected[1] == 12
