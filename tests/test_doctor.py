"""`python -m visprior.doctor`: a missing dataset FAILs with its fix, real data is OK, and the LA-cache line tells a finished
embedding from a checkpoint and from nothing, in the folder the run itself would read."""
import json, os, subprocess, sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

import visprior.doctor as doctor
import visprior.prior
from visprior.data import synthetic_cifar
from visprior.experiment import make_params
from visprior.la import la_dir
from visprior.train import create_method
ROOT = Path(__file__).resolve().parent.parent


def real_data_dir():
    "The folder with the real CIFAR-100 (from VISPRIOR_DATA), or None (as in conftest.py)."
    d = os.environ.get('VISPRIOR_DATA')
    return d if d and ((Path(d)/'cifar100.npz').is_file() or (Path(d)/'cifar-100-python').is_dir()) else None


def _main(argv, capsys):
    "The doctor's exit status and its lines."
    with pytest.raises(SystemExit) as e: doctor.main(argv)
    return e.value.code, capsys.readouterr().out.splitlines()


def _line(lines, what):
    hits = [l for l in lines if l[6:].startswith(what + ' ')]
    assert len(hits) == 1, lines
    return hits[0]


@pytest.fixture
def scratch_defaults(tmp_path, monkeypatch):
    "The default parameters, with the run folder in tmp_path (so what other runs left on disk cannot matter)."
    base = doctor.RunParams
    monkeypatch.setattr(doctor, 'RunParams', lambda: replace(base(), out_dir=str(tmp_path/'runs')))
    return tmp_path


def test_no_data_fails_with_the_fix(scratch_defaults, monkeypatch, capsys):
    empty = scratch_defaults/'empty'; empty.mkdir()
    monkeypatch.setenv('VISPRIOR_DATA', str(empty))
    code, lines = _main([], capsys)
    data = _line(lines, 'data')
    assert code == 1 and data.startswith('FAIL') and str(empty) in data and 'VISPRIOR_DATA=' in data
    assert lines[-1].startswith('1 FAIL')
    if doctor.uses_la(doctor.RunParams()): assert 'cannot be checked' in _line(lines, 'LA cache')
    assert list(empty.iterdir()) == []  # nothing downloaded, nothing written


def test_no_data_in_a_real_process(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'visprior.doctor', '--data_dir', str(tmp_path)], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    assert any(l.startswith('FAIL  data ') and 'VISPRIOR_DATA=' in l for l in r.stdout.splitlines()), r.stdout


def test_a_truncated_dataset_fails(tmp_path):
    np.savez(tmp_path/'cifar100.npz', x_train=np.zeros((200, 32, 32, 3), np.uint8), y_train=np.arange(200) % 100,
             x_test=np.zeros((10, 32, 32, 3), np.uint8), y_test=np.arange(10), fine_label_names=[f'c{i}' for i in range(100)])
    c, data = doctor.check_data(make_params(data_dir=str(tmp_path)))
    assert c.mark == 'FAIL' and data is None and '200 train / 10 test images' in c.found and '50,000' in c.found


def test_real_data_is_ok(scratch_defaults, capsys):
    d = real_data_dir()
    if d is None: pytest.skip('set VISPRIOR_DATA to a folder with cifar100.npz to run the real-data check')
    code, lines = _main(['--data_dir', d, '--device', 'cpu'], capsys)
    assert _line(lines, 'data').startswith('OK') and '50,000 train / 10,000 test images, 100 classes' in _line(lines, 'data')
    assert _line(lines, 'device').startswith('OK    device      cpu')
    assert 'no run in' in _line(lines, 'run') and str(scratch_defaults/'runs') in _line(lines, 'run')
    assert code == 0 and not [l for l in lines if l.startswith('FAIL')], lines


def test_real_la_cache_is_found():
    "The doctor names the folder that LA training wrote for the paper's LA settings (committed in results/la)."
    d = real_data_dir()
    cache = ROOT/'results'/'la'/'cifar100-lt100-ss0-la554e87d4'
    if d is None or not (cache/'embedding.npy').is_file(): pytest.skip('needs the real data and the committed LA cache')
    p = make_params(method='prior', la_epochs=200, la_k=1024, la_clusters=200, la_kmeans=3, data_dir=d,
                    la_root=str(ROOT/'results'/'la'))
    _, data = doctor.check_data(p)
    _, split = doctor.check_subset(p, data)
    c = doctor.check_la_cache(p, split)
    assert c.mark == 'OK' and str(cache) in c.found


@pytest.fixture
def tiny(tmp_path):
    "A prior run on the tiny synthetic data, its LA cache in tmp_path, and its training subset."
    p = make_params(dataset='synthetic', imb=5, method='prior_drw', la_epochs=20, model='resnet20', device='cpu',
                    la_root=str(tmp_path/'la'), out_dir=str(tmp_path/'runs'))
    _, split = doctor.check_subset(p, synthetic_cifar())
    return p, split


def test_la_cache_absent_checkpoint_present(tiny):
    p, split = tiny
    c = doctor.check_la_cache(p, split)
    assert c.mark == 'WARN' and 'nothing cached' in c.found and 'trains LA first, 20 epochs' in c.found
    assert "measured on this project's 2-core CPU" in c.found
    d = doctor.la_cache_dir(p, split); d.mkdir(parents=True)
    torch.save(dict(epoch=6, history=[dict(loss=np.float64(2.0), phase='LA')], cfg=dict(k=4)), d/'ckpt.pt')
    c = doctor.check_la_cache(p, split)
    assert c.mark == 'WARN' and 'after epoch 7/20' in c.found and '13 epochs' in c.found, c
    np.save(d/'embedding.npy', np.zeros((len(split.y_train), 8), np.float32))
    c = doctor.check_la_cache(p, split)
    assert c.mark == 'OK' and 'finished' in c.found and str(d) in c.found


class _Pickled:  # a checkpoint that is not plain data: loading it fully would run code
    def __reduce__(self): return (print, ('this must never run',))


def test_la_checkpoint_is_never_unpickled(tiny, capsys):
    p, split = tiny
    d = doctor.la_cache_dir(p, split); d.mkdir(parents=True)
    torch.save(dict(epoch=3, extra=_Pickled()), d/'ckpt.pt')
    c = doctor.check_la_cache(p, split)
    assert c.mark == 'FAIL' and str(d/'ckpt.pt') in c.found and 'this must never run' not in capsys.readouterr().out


@pytest.mark.parametrize('method, init', [('prior_drw', 'scratch'), ('prior_instance', 'scratch'), ('knn', 'scratch'),
                                          ('ce', 'ssl')])
def test_la_folder_is_the_one_the_run_reads(tiny, monkeypatch, method, init):
    "The folder the doctor checks is the one `run_la` would pass to `la_embedding`, for each way a run uses LA."
    p, split = tiny
    p = replace(p, method=method, init=init).validate()
    asked = []
    def fake_embedding(split, cfg, root, *a, **k):
        asked.append(la_dir(split, cfg, root))
        raise KeyboardInterrupt  # stop before anything is trained
    monkeypatch.setattr(visprior.prior, 'la_embedding', fake_embedding)
    with pytest.raises(KeyboardInterrupt):
        if init == 'ssl': visprior.prior.run_la(split, p.la_epochs, p.la_k, p.la_clusters, p.la_kmeans, p.la_root, 'cpu',
                                                False, p.model, p.image_size, p.workers)
        else: create_method(p.method, split, progress=False, **p.method_hparams())
    assert doctor.uses_la(p) and asked == [doctor.la_cache_dir(p, split)]


def test_run_folder_states(tiny):
    p, _ = tiny
    assert 'no run in' in doctor.check_run(p).found
    run = Path(p.out_dir)/p.name; run.mkdir(parents=True)
    (run/'params.json').write_text(json.dumps(asdict(p)))
    torch.save(dict(epoch=4, history=[dict(top1=np.float64(3.0))]), run/'ckpt.pt')
    c = doctor.check_run(p)
    assert c.mark == 'OK' and f'resumes after epoch 5/{p.epochs}' in c.found
    (run/'metrics.json').write_text('{"top1": 12.25}')
    c = doctor.check_run(p)
    assert c.mark == 'OK' and 'would be loaded, not re-run' in c.found and '12.25' in c.found
    (run/'params.json').write_text(json.dumps(asdict(replace(p, lr=0.5))))
    c = doctor.check_run(p)
    assert c.mark == 'FAIL' and 'lr' in c.found


def test_tiny_run_is_ok_and_nothing_is_written(tiny, tmp_path):
    p, _ = tiny
    before = sorted(tmp_path.rglob('*'))
    checks = doctor.run_checks(p)
    assert [c.mark for c in checks if c.what in ('data', 'subset', 'device', 'run')] == ['OK'] * 4
    assert not [c for c in checks if c.mark == 'FAIL'] and sorted(tmp_path.rglob('*')) == before


def test_bad_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as e: doctor.main(['--device', 'tpu'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: device='tpu' is invalid") and len(err.splitlines()) == 1, err
