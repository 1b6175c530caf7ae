"""DeviceLoader: crop and flip invariants, normalisation, (idx, x, y) consistency, determinism."""
import numpy as np
import torch
import torch.nn.functional as F

from visprior.data import DeviceLoader, random_crop, random_flip, synthetic_cifar, cifar_lt, make_loaders


def _windows(img, pad):
    "Every crop and flipped crop of a zero-padded image, by brute force."
    C, H, W = img.shape
    p = F.pad(img, (pad,) * 4)
    out = []
    for a in range(2 * pad + 1):
        for b in range(2 * pad + 1):
            w = p[:, a:a + H, b:b + W]
            out += [((a, b, False), w), ((a, b, True), w.flip(2))]
    return out


def test_every_augmented_image_is_a_padded_window_and_all_offsets_occur():
    x = torch.randint(1, 256, (400, 3, 8, 8), dtype=torch.uint8)  # no zero pixels: any zero is padding
    g = torch.Generator().manual_seed(0)
    out = random_flip(random_crop(x, 2, g), 0.5, g)
    seen = set()
    for i in range(len(x)):
        hits = [k for k, w in _windows(x[i], 2) if torch.equal(w, out[i])]
        assert hits, f'image {i} is not a window of its padded original'
        seen.add(hits[0])
    offsets = {(a, b) for a, b, _ in seen}
    assert offsets == {(a, b) for a in range(5) for b in range(5)}
    flips = np.mean([f for _, _, f in seen])
    assert 0.4 < flips < 0.6


def test_loader_yields_consistent_idx_x_y_and_normalises():
    d = synthetic_cifar()
    mean = d.x_train.reshape(-1, 3).mean(0) / 255
    std = d.x_train.reshape(-1, 3).std(0) / 255
    dl = DeviceLoader(d.x_train, d.y_train, 64, train=True, mean=mean, std=std, seed=1, pad=0, flip=False)
    allx = []
    for idx, x, y in dl:
        ref = (torch.as_tensor(d.x_train[idx.numpy()]).permute(0, 3, 1, 2).float() / 255
               - torch.tensor(mean).view(1, 3, 1, 1).float()) / torch.tensor(std).view(1, 3, 1, 1).float()
        assert torch.allclose(x, ref, atol=1e-5)
        assert torch.equal(y, torch.as_tensor(d.y_train[idx.numpy()]))
        allx.append(x)
    allx = torch.cat(allx)
    assert torch.allclose(allx.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(allx.std((0, 2, 3)), torch.ones(3), atol=1e-3)


def test_each_epoch_is_a_permutation_and_deterministic():
    s = cifar_lt('synthetic', imb=3)
    tr, te = make_loaders(s, batch_size=50, seed=7)
    n = len(s.y_train)
    def epoch(dl, e):
        dl.set_epoch(e)
        return [(i.clone(), x.clone()) for i, x, _ in dl]
    a, b, c = epoch(tr, 0), epoch(tr, 0), epoch(tr, 1)
    assert torch.equal(torch.cat([i for i, _ in a]).sort().values, torch.arange(n))
    assert all(torch.equal(x1, x2) and torch.equal(i1, i2) for (i1, x1), (i2, x2) in zip(a, b))
    assert not torch.equal(torch.cat([i for i, _ in a]), torch.cat([i for i, _ in c]))
    tr2, _ = make_loaders(s, batch_size=50, seed=8)
    assert not torch.equal(torch.cat([i for i, _ in a]), torch.cat([i for i, _ in epoch(tr2, 0)]))
    # the test loader is in order and unaugmented
    assert torch.equal(torch.cat([i for i, _, _ in te]), torch.arange(len(s.y_test)))
    assert len(tr) == -(-n // 50)


def test_channels_last_does_not_change_values():
    s = cifar_lt('synthetic', imb=1)
    a = next(iter(make_loaders(s, 16, seed=0)[0]))[1]
    b = next(iter(make_loaders(s, 16, seed=0, channels_last=True)[0]))[1]
    assert b.is_contiguous(memory_format=torch.channels_last) and torch.equal(a, b)
