"""iNaturalist 2018: the two annotation readers, the split's counts, clear errors, and a reproducible multi-worker loader."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from visprior.data import DataNotFoundError, lt_counts, shot_groups
from visprior.inat import (INAT_FILES, INatLoader, JPEGDataset, inat_split, read_inat_json, read_inat_list,
                           write_synthetic_inat)


@pytest.fixture
def inat_root(tmp_path):
    return write_synthetic_inat(tmp_path, num_classes=5, n_max=12, imb=6, n_val=2)


def test_json_and_list_readers_agree(inat_root):
    d = inat_root/'inat2018'
    for split in ('train', 'val'):
        pj, yj, names = read_inat_json(d/f'{split}2018.json')
        pl, yl = read_inat_list(d/f'iNaturalist18_{split}.txt')
        assert pj == pl and np.array_equal(yj, yl) and yj.dtype == yl.dtype == np.int64
        assert all(Path(p).is_file() for p in pj)
        assert names == [f'Synthetica species{c}' for c in range(5)]


def test_split_counts_and_groups(inat_root):
    counts = lt_counts(5, 12, 6)
    for fmt in ('auto', 'json', 'list'):
        s = inat_split(inat_root, fmt)
        assert s.counts.tolist() == counts.tolist()
        assert np.bincount(s.y_test).tolist() == [2] * 5
        assert {k: v.tolist() for k, v in s.groups.items()} == {k: v.tolist() for k, v in shot_groups(counts).items()}
        assert s.num_classes == 5 and s.imb == counts.max() / counts.min()


def test_json_labels_follow_sorted_category_ids(tmp_path):
    doc = dict(images=[dict(id=1, file_name='p.jpg'), dict(id=2, file_name='q.jpg')],
               annotations=[dict(id=0, image_id=2, category_id=4), dict(id=1, image_id=1, category_id=9)],
               categories=[dict(id=9, name='nine'), dict(id=4, name='four')])
    (tmp_path/'a.json').write_text(json.dumps(doc))
    paths, y, names = read_inat_json(tmp_path/'a.json', '/img')
    assert paths == ['/img/p.jpg', '/img/q.jpg'] and y.tolist() == [1, 0] and names == ['four', 'nine']


def test_hand_written_list(tmp_path):
    f = tmp_path/'list.txt'
    f.write_text('train_val2018/Plantae/2/a.jpg 2\n\ntrain_val2018/Aves/0/b.jpg 0\ntrain_val2018/Plantae/7/c.jpg 7\n')
    paths, y = read_inat_list(f, tmp_path/'root')
    assert paths == [str(tmp_path/'root'/p) for p in
                     ('train_val2018/Plantae/2/a.jpg', 'train_val2018/Aves/0/b.jpg', 'train_val2018/Plantae/7/c.jpg')]
    assert y.tolist() == [2, 0, 7] and y.dtype == np.int64


@pytest.mark.parametrize('bad', ['b.jpg', 'b.jpg x', 'b.jpg 1 2', 'b.jpg -3'])
def test_malformed_list_line_names_file_and_line(tmp_path, bad):
    f = tmp_path/'list.txt'
    f.write_text(f'a.jpg 0\n\n{bad}\n')
    with pytest.raises(ValueError, match=r'list\.txt, line 3'):
        read_inat_list(f)


def test_data_not_found_message(tmp_path, monkeypatch):
    monkeypatch.setenv('VISPRIOR_DATA', str(tmp_path))
    with pytest.raises(DataNotFoundError) as e:
        inat_split()
    msg = str(e.value)
    for f in (*INAT_FILES['json'], *INAT_FILES['list']):
        assert str(tmp_path.resolve()/'inat2018'/f) in msg
    for hint in ('from VISPRIOR_DATA', 'data_dir', 'write_synthetic_inat', 'download'):
        assert hint in msg
    with pytest.raises(ValueError, match="'auto', 'json', 'list'"):
        inat_split(tmp_path, fmt='xml')


def test_loader_with_workers_is_reproducible(inat_root):
    s = inat_split(inat_root)
    ds = JPEGDataset(s.train_paths, s.y_train, train=True, size=24)

    def first(dl, epoch):
        dl.set_epoch(epoch)
        idx, x, y = next(iter(dl))
        return idx.clone(), x.clone(), y.clone()

    dl = INatLoader(ds, 8, train=True, seed=5, workers=2)
    a, b = first(dl, 0), first(dl, 0)  # the same (persistent) workers, asked again
    c = first(INatLoader(ds, 8, train=True, seed=5, workers=2), 0)  # fresh workers
    d = first(INatLoader(ds, 8, train=True, seed=5, workers=0), 0)  # no workers at all
    for other in (b, c, d):
        assert all(torch.equal(u, v) for u, v in zip(a, other))
    assert a[1].shape == (8, 3, 24, 24) and a[1].dtype == torch.float32
    assert torch.equal(a[2], torch.as_tensor(s.y_train)[a[0]])
    assert not torch.equal(first(dl, 1)[0], a[0])
