"""The data protocol: published CIFAR-LT counts, the reference selection rule, readers and clear errors."""
import os, pickle
from pathlib import Path
import numpy as np
import pytest

from visprior import data as D

PUBLISHED_SIZES = {  # ../shared/REFERENCE.md, Cao et al. 2019
    'cifar100': {200: 9502, 100: 10847, 50: 12608, 20: 15907, 10: 19573},
    'cifar10': {200: 11203, 100: 12406, 50: 13996, 20: 17023, 10: 20431},
}
PUBLISHED_GROUPS = {100: (35, 35, 30), 50: (41, 41, 18), 10: (69, 31, 0)}  # many/medium/few, CIFAR-100-LT


@pytest.mark.parametrize('name', ['cifar100', 'cifar10'])
@pytest.mark.parametrize('imb', [200, 100, 50, 20, 10])
def test_published_sizes_from_counts(name, imb):
    spec = D.CIFAR_SPECS[name]
    assert D.lt_counts(spec['num_classes'], spec['n_max'], imb).sum() == PUBLISHED_SIZES[name][imb]


def test_published_cifar10_profile():
    assert D.lt_counts(10, 5000, 100).tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


@pytest.mark.parametrize('imb,groups', PUBLISHED_GROUPS.items())
def test_published_group_sizes(imb, groups):
    g = D.shot_groups(D.lt_counts(100, 500, imb))
    assert (len(g['many']), len(g['medium']), len(g['few'])) == groups


def test_step_profile():
    assert D.lt_counts(100, 500, 10, 'step').tolist() == [500] * 50 + [50] * 50


@pytest.mark.parametrize('bad', [0, 0.99, -5, 'abc', None, True, float('nan')])
def test_bad_imb_is_a_clear_error(bad):
    with pytest.raises(ValueError, match='imb='):
        D.lt_counts(100, 500, bad)


def _reference_selection(y, counts, seed):
    "The reference code's rule, written out with numpy's *global* generator, as published."
    np.random.seed(seed)
    keep = []
    for c, n in zip(np.unique(y), counts):
        idx = np.where(y == c)[0]
        np.random.shuffle(idx)
        keep.append(idx[:n])
    return np.concatenate(keep)


def test_selection_matches_reference_rule_on_synthetic_labels():
    y = np.random.default_rng(1).integers(0, 10, 3000)
    counts = D.lt_counts(10, np.bincount(y).min(), 10)
    for seed in (0, 3):
        assert np.array_equal(D.lt_indices(y, counts, seed), _reference_selection(y, counts, seed))


def test_real_cifar100_subsets(real_cifar100):
    full = real_cifar100
    assert full.x_train.shape == (50000, 32, 32, 3) and full.x_test.shape == (10000, 32, 32, 3)
    assert full.y_train[:5].tolist() == [19, 29, 0, 11, 1] and full.y_test[0] == 49  # ../shared/data/README.md
    mean = full.x_train.reshape(-1, 3).mean(0) / 255
    assert np.allclose(mean, [0.5071, 0.4865, 0.4409], atol=1e-4)
    subsets = {}
    for imb, n in PUBLISHED_SIZES['cifar100'].items():
        s = D.lt_split(full, imb)
        subsets[imb] = s
        assert len(s.y_train) == n
        assert np.array_equal(np.bincount(s.y_train, minlength=100), s.counts)
        assert np.array_equal(s.y_train, full.y_train[s.train_idx])
        assert len(np.unique(s.train_idx)) == n
    # the images kept at rho=100 are, class by class, a prefix of those kept at rho=10
    for c in range(100):
        a = subsets[100].train_idx[subsets[100].y_train == c]
        b = subsets[10].train_idx[subsets[10].y_train == c]
        assert np.array_equal(a, b[:len(a)])
    assert np.array_equal(subsets[100].train_idx, _reference_selection(full.y_train, subsets[100].counts, 0))
    assert len(D.lt_split(full, 1).y_train) == 50000
    other = D.lt_split(full, 100, subset_seed=1)
    assert len(other.y_train) == 10847 and not np.array_equal(other.train_idx, subsets[100].train_idx)


def test_superclasses_on_real_data(real_cifar100):
    s = D.lt_split(real_cifar100, 100)
    coarse = s.coarse_of_class
    assert coarse.shape == (100,) and set(np.bincount(coarse)) == {5}  # 20 superclasses of 5 classes
    assert s.classes[0] == 'apple' and s.coarse_classes[coarse[0]] == 'fruit_and_vegetables'


def _write_cifar10_official(folder, x, y):
    folder.mkdir(parents=True)
    for i in range(1, 6):
        part = slice((i - 1) * 2, i * 2)
        with open(folder/f'data_batch_{i}', 'wb') as f:
            pickle.dump({b'data': x[part].transpose(0, 3, 1, 2).reshape(-1, 3072), b'labels': list(map(int, y[part]))}, f)
    with open(folder/'test_batch', 'wb') as f:
        pickle.dump({b'data': x[:3].transpose(0, 3, 1, 2).reshape(-1, 3072), b'labels': list(map(int, y[:3]))}, f)
    with open(folder/'batches.meta', 'wb') as f:
        pickle.dump({b'label_names': [f'n{i}'.encode() for i in range(10)]}, f)


def test_official_readers_on_fixtures(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    D.write_cifar100_official(tmp_path/'cifar-100-python', x, y * 10, x[:4], y[:4] * 10, coarse_train=y * 2,
                              classes=[f'f{i}' for i in range(100)])
    got = D.load_cifar('cifar100', tmp_path, download=False)
    assert np.array_equal(got.x_train, x) and np.array_equal(got.y_train, y * 10)
    assert np.array_equal(got.coarse_train, y * 2) and got.classes[5] == 'f5'
    # pixel (0, 0) of image 0: the official layout is 1024 R, then 1024 G, then 1024 B values
    raw = pickle.load(open(tmp_path/'cifar-100-python'/'train', 'rb'), encoding='bytes')[b'data']
    assert got.x_train[0, 0, 0].tolist() == [raw[0, 0], raw[0, 1024], raw[0, 2048]]
    _write_cifar10_official(tmp_path/'cifar-10-batches-py', x, y)
    c10 = D.load_cifar('cifar10', tmp_path, download=False)
    assert np.array_equal(c10.x_train, x) and np.array_equal(c10.y_test, y[:3]) and c10.classes[9] == 'n9'


def test_npz_is_preferred_and_read_without_pickles(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path/'cifar100.npz', x_train=x, y_train=np.arange(6), x_test=x[:2], y_test=np.arange(2),
             fine_label_names=np.array([f'c{i}' for i in range(100)]))
    got = D.load_cifar('cifar100', tmp_path, download=False)
    assert got.source.endswith('cifar100.npz') and np.array_equal(got.x_train, x)
    bad = tmp_path/'bad'; bad.mkdir()
    np.savez(bad/'cifar100.npz', x_train=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match='allow_pickle'):
        D.load_cifar('cifar100', bad, download=False)


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    arg, env, cache = tmp_path/'arg', tmp_path/'env', tmp_path/'xdg'
    monkeypatch.setenv('VISPRIOR_DATA', str(env))
    monkeypatch.setenv('XDG_CACHE_HOME', str(cache))
    assert D.resolve_data_dir(arg)[0] == arg.resolve()
    assert D.resolve_data_dir()[0] == env.resolve()
    monkeypatch.delenv('VISPRIOR_DATA')
    assert D.resolve_data_dir()[0] == cache/'visprior'


def test_missing_data_error_names_paths_and_fixes(tmp_path, monkeypatch):
    calls = []
    def no_internet(name, root):
        calls.append(root)
        raise OSError('<urlopen error [Errno -3] Temporary failure in name resolution>')
    monkeypatch.setattr(D, '_download', no_internet)
    monkeypatch.setenv('VISPRIOR_DATA', str(tmp_path))
    with pytest.raises(D.DataNotFoundError) as e:
        D.load_cifar('cifar100')  # download on by default: it is tried, fails, and the error says so
    msg = str(e.value)
    assert calls == [tmp_path.resolve()]
    for part in (str(tmp_path.resolve()/'cifar100.npz'), str(tmp_path.resolve()/'cifar-100-python'), 'VISPRIOR_DATA',
                 'data_dir', 'name resolution', 'download=True'):
        assert part in msg, part
    with pytest.raises(D.DataNotFoundError, match='download was off'):
        D.load_cifar('cifar100', tmp_path/'other', download=False)
    assert len(calls) == 1  # download=False never tries


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset='svhn'.*cifar100"):
        D.load_cifar('svhn')


# --- reliability: imb bounds, unreadable files, image size, no untrusted unpickling ---

@pytest.mark.parametrize('imb_type', D.IMB_TYPES)
def test_imb_above_the_per_class_maximum_is_refused(imb_type, tmp_path):
    for bad in (501, 1000, float('inf'), float('nan')):
        with pytest.raises(ValueError, match=rf'imb={bad!r}.*at most 500'):
            D.lt_counts(100, 500, bad, imb_type)
    assert D.lt_counts(100, 500, 500, imb_type).min() == 1  # the largest valid imb keeps one image in the last class
    assert D.lt_counts(10, 49, 48.9, imb_type).min() == 1
    with pytest.raises(ValueError, match='imb=49 '):  # 49 * (1/49) rounds below 1: the rounding must not slip through
        D.lt_counts(10, 49, 49, imb_type)
    syn = D.synthetic_cifar()
    assert D.lt_split(syn, 60, imb_type).counts.min() == 1
    with pytest.raises(ValueError, match=r"imb=61 is invalid for synthetic.*at most 60"):
        D.lt_split(syn, 61, imb_type)
    with pytest.raises(ValueError, match=r"imb=1000 is invalid for cifar100.*at most 500"):  # before looking for data
        D.cifar_lt('cifar100', 1000, imb_type, data_dir=tmp_path, download=False)
    with pytest.raises(ValueError, match=r"imb=inf is invalid for cifar10.*at most 5000"):
        D.cifar_lt('cifar10', float('inf'), imb_type, data_dir=tmp_path, download=False)


def test_max_imb():
    assert D.max_imb('cifar100') == 500 and D.max_imb('cifar10') == 5000 and D.max_imb('synthetic') == 60
    assert D.max_imb('inat2018') is None and D.max_imb('svhn') is None
    for ds in ('cifar100', 'cifar10'):
        spec = D.CIFAR_SPECS[ds]
        for t in D.IMB_TYPES: assert D.lt_counts(spec['num_classes'], spec['n_max'], D.max_imb(ds), t).min() == 1
    assert D.cifar_lt('synthetic', D.max_imb('synthetic')).counts.min() == 1


def _npz(folder, **kw):
    "A tiny cifar100.npz in `folder`, with arrays replaced or dropped (None) by `kw`."
    x = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    a = dict(x_train=x, y_train=np.arange(6), x_test=x[:2], y_test=np.arange(2),
             fine_label_names=np.array([f'c{i}' for i in range(100)]))
    a.update(kw)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder/'cifar100.npz', **{k: v for k, v in a.items() if v is not None})
    return folder/'cifar100.npz'


def test_unreadable_npz_is_a_clear_error_naming_the_file_and_the_fix(tmp_path):
    cases = {}
    p = _npz(tmp_path/'truncated'); p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2]); cases['truncated'] = p
    cases['object'] = _npz(tmp_path/'object', x_train=np.array([object()], dtype=object))
    cases['nokey'] = _npz(tmp_path/'nokey', x_test=None)
    cases['floatlabels'] = _npz(tmp_path/'floatlabels', y_train=np.arange(6) + 0.5)
    p = tmp_path/'garbage'/'cifar100.npz'; p.parent.mkdir(); p.write_bytes(b'not a zip file at all'); cases['garbage'] = p
    p = tmp_path/'npy'/'cifar100.npz'; p.parent.mkdir()
    with open(p, 'wb') as f: np.save(f, np.zeros(3))
    cases['npy'] = p
    for what, path in cases.items():
        with pytest.raises(D.DataFileError) as e:
            D.load_cifar('cifar100', path.parent, download=False)
        msg = str(e.value)
        assert isinstance(e.value, ValueError) and str(path) in msg and 'VISPRIOR_DATA' in msg, (what, msg)
    assert 'allow_pickle' in str(pytest.raises(D.DataFileError, D.read_cifar_npz, cases['object']).value)
    assert "'x_test'" in str(pytest.raises(D.DataFileError, D.read_cifar_npz, cases['nokey']).value)


def test_cifar_images_must_be_32x32(tmp_path):
    x16 = np.zeros((6, 16, 16, 3), np.uint8)
    p = _npz(tmp_path/'npz', x_train=x16)
    with pytest.raises(D.DataFileError) as e:
        D.load_cifar('cifar100', p.parent, download=False)
    for part in (str(p), '(6, 16, 16, 3)', '(N, 32, 32, 3)'): assert part in str(e.value), part
    # the official format: 16x16 images are 768 values a row, which must not be reshaped into fewer 32x32 images
    D.write_cifar100_official(tmp_path/'off'/'cifar-100-python', x16[:4], np.arange(4), x16[:4], np.arange(4))
    with pytest.raises(D.DataFileError) as e:
        D.load_cifar('cifar100', tmp_path/'off', download=False)
    assert str(tmp_path/'off'/'cifar-100-python'/'train') in str(e.value) and '3072' in str(e.value)
    # the synthetic stand-in is not CIFAR: other sizes stay allowed there
    D.CifarData('synthetic', x16, np.zeros(6, np.int64), x16, np.zeros(6, np.int64), ['a']).validate()


class _Evil:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


def test_official_pickles_never_run_code(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    folder = D.write_cifar100_official(tmp_path/'cifar-100-python', x, np.arange(4), x, np.arange(4))
    marker = tmp_path/'pwned'
    with open(folder/'meta', 'wb') as f:
        pickle.dump({b'fine_label_names': [_Evil(marker)], b'coarse_label_names': []}, f)
    with pytest.raises(D.DataFileError) as e:
        D.read_cifar_official(folder)
    assert not marker.exists()
    assert str(folder/'meta') in str(e.value) and 'system' in str(e.value)


@pytest.mark.parametrize('protocol', [4, 5])
def test_genuine_format_pickles_still_load(tmp_path, protocol):
    x = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    folder = D.write_cifar100_official(tmp_path/'cifar-100-python', x, np.arange(4), x[:2], np.arange(2))
    for fn in ('train', 'test', 'meta'):  # protocol 5 is the default from Python 3.14 on; it pickles arrays otherwise
        d = pickle.load(open(folder/fn, 'rb'))
        with open(folder/fn, 'wb') as f: pickle.dump(d, f, protocol=protocol)
    got = D.read_cifar_official(folder)
    assert np.array_equal(got.x_train, x) and got.classes[3] == 'class3'


def test_truncated_or_missing_official_pickle_is_a_clear_error(tmp_path):
    x = np.zeros((4, 32, 32, 3), np.uint8)
    for fn in ('train', 'meta'):
        folder = D.write_cifar100_official(tmp_path/fn/'cifar-100-python', x, np.arange(4), x, np.arange(4))
        if fn == 'train': (folder/fn).write_bytes((folder/fn).read_bytes()[:1000])
        else: (folder/fn).unlink()
        with pytest.raises(D.DataFileError) as e: D.load_cifar('cifar100', folder.parent, download=False)
        assert str(folder/fn) in str(e.value) and 'download' in str(e.value), str(e.value)
