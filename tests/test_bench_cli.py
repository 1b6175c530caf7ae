"""`python -m visprior.bench`: writes only with --save, and a user error is one line `error: ...` with exit status 2.

The measurements themselves are replaced by fakes (a real run takes minutes); what is tested is the command line."""
import hashlib, os, subprocess, sys
from pathlib import Path

import pytest

import visprior.bench as bench
import visprior.utils
from visprior.data import lt_split, synthetic_cifar

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT/'results'/'benchmarks'


def _digest(folder):
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(Path(folder).glob('*'))}


@pytest.fixture(autouse=True)
def committed_untouched():
    "Every test here leaves the committed results/benchmarks/ exactly as it was."
    before = _digest(COMMITTED)
    yield
    assert _digest(COMMITTED) == before


@pytest.fixture
def fake(monkeypatch):
    "Instant stand-ins for the data and the measurements; records what main passed on."
    calls = {}
    monkeypatch.setattr(bench, 'cifar_lt', lambda *a, **k: lt_split(synthetic_cifar(n_train=8), 1))
    def benchmark(split, steps, workers, device):
        calls.update(steps=steps, workers=workers, device=device)
        return dict(images_per_s={f'pipeline {i}': 100.0 + i for i in range(6)}, ratio_full_step=1.5, ratio_loading=2.0,
                    ratio_same_precision=1.1, steps=steps, batch_size=128, workers=workers, device=device, torch='t',
                    cpu_count=2, threads=2, dataset='fake')
    monkeypatch.setattr(bench, 'benchmark', benchmark)
    monkeypatch.setattr(bench, 'la_benchmark', lambda split, device='cpu': dict(
        la_images_per_s=50.0, la_cluster_s=0.1, la_epoch_s=1.0, k=4, n_clusters=2, n_kmeans=1))
    monkeypatch.setattr(bench, 'inat_estimate', lambda: dict(fake_inat=1))
    monkeypatch.setattr(bench, 'inat_markdown', lambda r: '# fake inat report')
    return calls


def _exit(argv, capsys):
    "main's exit status and stderr (None if it returned)."
    try: bench.main(argv)
    except SystemExit as e: return e.code, capsys.readouterr().err
    return None, capsys.readouterr().err


@pytest.mark.parametrize('argv, names', [(['--steps', '0'], ['--steps', '0', '>= 1']),
                                         (['--steps', '-3'], ['--steps', '-3']),
                                         (['--steps', 'two'], ['--steps', "'two'"]),
                                         (['--workers', '-1'], ['--workers', '-1', '>= 0']),
                                         (['--device', 'tpu'], ['--device', "'tpu'"])])
def test_bad_flag_is_one_line_exit_2(argv, names, fake, tmp_path, capsys):
    code, err = _exit([*argv, '--out', str(tmp_path/'out')], capsys)
    assert code == 2 and 'Traceback' not in err
    line = [l for l in err.splitlines() if 'error:' in l]
    assert len(line) == 1 and all(n in line[0] for n in names), err
    assert not (tmp_path/'out').exists() and fake == {}  # nothing measured, nothing written


def test_steps_0_in_a_real_process(tmp_path):
    "The reported crash: `--steps 0` is refused up front, with no traceback."
    env = {**os.environ, 'VISPRIOR_DATA': str(tmp_path)}
    r = subprocess.run([sys.executable, '-m', 'visprior.bench', '--steps', '0', '--out', str(tmp_path/'out')],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and 'Traceback' not in r.stderr and '--steps: 0 is invalid' in r.stderr, r.stderr
    assert not (tmp_path/'out').exists()


def test_default_writes_nothing(fake, tmp_path, monkeypatch, capsys):
    # the default --out is <project root>/results/benchmarks: point the root at tmp_path to see what would be written
    monkeypatch.setattr(visprior.utils, 'project_root', lambda *a, **k: tmp_path)
    r = bench.main(['--steps', '1', '--workers', '0', '--device', 'cpu'])
    out = capsys.readouterr().out
    assert fake == dict(steps=1, workers=0, device='cpu') and r['steps'] == 1
    assert '| pipeline 0 | 100 |' in out  # the report is printed
    assert 'wrote nothing' in out and '--save' in out and str(tmp_path/'results'/'benchmarks'/'train_throughput') in out
    assert list(tmp_path.iterdir()) == []


def test_save_writes_to_out(fake, tmp_path, capsys):
    out = tmp_path/'bench'
    bench.main(['--steps', '2', '--out', str(out)])
    assert not out.exists() and 'wrote nothing' in capsys.readouterr().out
    bench.main(['--steps', '2', '--out', str(out), '--save'])
    assert sorted(p.name for p in out.iterdir()) == ['train_throughput.json', 'train_throughput.md']
    assert '"steps": 2' in (out/'train_throughput.json').read_text() and 'wrote' in capsys.readouterr().out
    assert '`python -m visprior.bench --save`' in (out/'train_throughput.md').read_text()


def test_inat_writes_only_with_save(fake, tmp_path, capsys):
    out = tmp_path/'bench'
    bench.main(['--inat', '--out', str(out)])
    text = capsys.readouterr().out
    assert '# fake inat report' in text and 'wrote nothing' in text and 'inat_estimate' in text and not out.exists()
    bench.main(['--inat', '--out', str(out), '--save'])
    assert sorted(p.name for p in out.iterdir()) == ['inat_estimate.json', 'inat_estimate.md']


def test_data_not_found_is_one_line(tmp_path, capsys):
    empty = tmp_path/'empty'; empty.mkdir()
    code, err = _exit(['--data_dir', str(empty), '--steps', '1', '--out', str(tmp_path/'out')], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith('error: cifar100 was not found in ') and str(empty) in err and 'VISPRIOR_DATA=' in err
    assert not (tmp_path/'out').exists()


def test_value_error_is_one_line(fake, tmp_path, monkeypatch, capsys):
    def bad(*a, **k): raise ValueError('batch_size=0 must be >= 1')
    monkeypatch.setattr(bench, 'benchmark', bad)
    code, err = _exit(['--out', str(tmp_path/'out')], capsys)
    assert (code, err) == (2, 'error: batch_size=0 must be >= 1\n') and not (tmp_path/'out').exists()


def test_time_steps_refuses_zero_steps_and_empty_loaders():
    import torch
    batches = [(None, torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))] * 6
    with pytest.raises(ValueError, match='steps=0'): bench.time_steps(batches, steps=0)
    assert bench.time_steps(batches, steps=1, warmup=1) > 0
    with pytest.raises(ValueError, match='no batch'): bench.time_steps([], steps=1)  # it used to loop forever
