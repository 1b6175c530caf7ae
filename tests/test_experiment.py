"""Run folders, bad parameters, atomic writes, and the papermill notebook end to end on tiny data."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

from visprior.experiment import make_params, run_experiment
from visprior.utils import atomic_write, write_json

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(dataset='synthetic', imb=5, epochs=2, batch_size=32, lr=0.05, warmup_epochs=1, schedule='cosine', method='ce',
            init='scratch', alpha=0.1, alpha_power=0.0)


@pytest.mark.parametrize('bad,match', [
    (dict(imb=0), 'imb=0'), (dict(imb=-3), 'imb=-3'), (dict(dataset='mnist'), "dataset='mnist'"),
    (dict(method='magic'), "method='magic'"), (dict(epochs=-1), 'epochs=-1'), (dict(epochs=0), 'epochs=0'),
    (dict(schedule='exp'), "schedule='exp'"), (dict(imb_type='linear'), "imb_type='linear'"),
    (dict(batch_size=0), 'batch_size=0'), (dict(lr=0), 'lr=0'), (dict(imbalance=3), 'unknown parameter'),
    (dict(device='tpu'), "device='tpu'"), (dict(seed=-1), 'seed=-1')])
def test_bad_parameters_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        make_params(**bad)


def test_bad_parameters_do_no_work(tmp_path):
    with pytest.raises(ValueError):
        run_experiment({**TINY, 'imb': 0.5, 'out_dir': str(tmp_path)})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    p = tmp_path/'metrics.json'
    write_json(p, {'top1': 40.0})
    def broken(f):
        Path(f).write_text('{"top1": ')
        raise RuntimeError('killed mid-write')
    with pytest.raises(RuntimeError):
        atomic_write(p, broken)
    assert json.loads(p.read_text()) == {'top1': 40.0} and os.listdir(tmp_path) == ['metrics.json']


def test_run_folder_and_skip(tmp_path):
    m = run_experiment({**TINY, 'out_dir': str(tmp_path)}, progress=False)
    run = tmp_path/'synthetic-lt5-ce-s0'
    saved = json.loads((run/'metrics.json').read_text())
    assert saved['top1'] == m['top1'] and saved['headline'] == 'last epoch'
    assert saved['best_of_run']['top1'] >= saved['top1']
    assert {'torch', 'numpy', 'python'} <= set(saved['env']) and 'commit' in saved['git'] and saved['wall_time_s'] > 0
    assert len(saved['per_class']) == 10 and saved['seeds'] == {'seed': 0, 'subset_seed': 0}
    t = saved['timing']  # each clock named for what it covers; no key called process time that holds wall time
    assert 'process_time_s' not in saved and t['epoch_loop_s'] == saved['wall_time_s'] and t['resumed'] is False
    assert t['process_wall_s'] >= t['epoch_loop_s'] > 0 and t['epoch_loop_cpu_s'] > 0 and 0 < t['cpu_share']
    hist = (run/'history.csv').read_text().splitlines()
    assert len(hist) == 3 and hist[0].startswith('epoch,')
    assert not (run/'ckpt.pt').exists() and (run/'model.pt').exists() and (run/'per_class_accuracy.png').exists()
    mtime = (run/'metrics.json').stat().st_mtime_ns
    run_experiment({**TINY, 'out_dir': str(tmp_path)}, progress=False)
    assert (run/'metrics.json').stat().st_mtime_ns == mtime  # skipped, not redone
    with pytest.raises(ValueError, match='other parameters'):
        run_experiment({**TINY, 'lr': 0.2, 'out_dir': str(tmp_path)}, progress=False)
    assert json.loads((run/'metrics.json').read_text()) == saved  # earlier result untouched


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    a = run_experiment({**TINY, 'epochs': 3, 'out_dir': str(tmp_path/'a')}, progress=False)
    part = run_experiment({**TINY, 'epochs': 3, 'out_dir': str(tmp_path/'b')}, progress=False, stop_after=1)
    assert part['incomplete'] and (tmp_path/'b'/'synthetic-lt5-ce-s0'/'ckpt.pt').exists()
    b = run_experiment({**TINY, 'epochs': 3, 'out_dir': str(tmp_path/'b')}, progress=False)
    assert a['per_class'] == b['per_class'] and a['top1'] == b['top1']
    assert a['timing']['resumed'] is False and b['timing']['resumed'] is True  # b's process clock misses epoch 1
    hist = (tmp_path/'b'/'synthetic-lt5-ce-s0'/'history.csv').read_text().splitlines()
    assert 'cpu_time' in hist[0] and len(hist) == 4 and b['timing']['epoch_loop_cpu_s'] > 0


def _papermill(tmp_path, *params, env_extra=None):
    args = [sys.executable, '-m', 'papermill', str(ROOT/'nbs'/'run_cifar_lt.ipynb'), str(tmp_path/'out.ipynb')]
    for k, v in params: args += ['-p', k, str(v)]
    env = {**{k: v for k, v in os.environ.items() if k != 'IN_TEST'}, **(env_extra or {})}
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


TINY_NB = (('dataset', 'synthetic'), ('imb', 5), ('epochs', 2), ('batch_size', 32), ('schedule', 'cosine'),
           ('la_epochs', 2), ('la_k', 64), ('la_clusters', 8), ('la_kmeans', 2))


def test_papermill_end_to_end_on_tiny_data(tmp_path):
    # no method or init given: the notebook's default, the recommended recipe (logit adjustment from a tiny LA backbone)
    r = _papermill(tmp_path, *TINY_NB, ('la_root', tmp_path/'la'), ('out_dir', tmp_path/'runs'))
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path/'runs'/'synthetic-lt5-logit_adjust-ssl-s0'
    m = json.loads((run/'metrics.json').read_text())
    assert m['budget']['epochs'] == 2 and 0 <= m['top1'] <= 100
    p = json.loads((run/'params.json').read_text())
    assert (p['imb'], p['method'], p['init'], p['tau']) == (5, 'logit_adjust', 'ssl', 1.0)
    la = Path(m['init_la_dir'])  # it started from the LA backbone it trained on its own images
    assert la.parent == tmp_path/'la' and (la/'embedding.npy').is_file(), m['init_la_dir']
    out = (tmp_path/'out.ipynb').read_text()
    assert 'this run: logit_adjust' in out and 'No committed run has these parameters' in out, out[-3000:]


def test_in_test_in_the_environment_does_not_replace_parameters(tmp_path):
    # IN_TEST left set in a shell: papermill still runs exactly the parameters given (1 epoch, CE, this out_dir)
    r = _papermill(tmp_path, *TINY_NB, ('epochs', 1), ('method', 'ce'), ('init', 'scratch'), ('out_dir', tmp_path/'runs'),
                   env_extra={'IN_TEST': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path/'runs'/'synthetic-lt5-ce-s0'/'metrics.json').read_text())
    assert m['budget']['epochs'] == 1
    assert 'IN_TEST' in (tmp_path/'out.ipynb').read_text() and 'is ignored' in (tmp_path/'out.ipynb').read_text()


def test_notebook_defaults_are_the_package_defaults():
    "The main command (no -p but imb) trains what RunParams calls the default: the recommended recipe, paper budget."
    import papermill as pm
    from dataclasses import asdict
    from visprior.experiment import RunParams
    declared = pm.inspect_notebook(str(ROOT/'nbs'/'run_cifar_lt.ipynb'))
    d = asdict(RunParams())
    for k, v in declared.items():
        assert eval(v['default']) == d[k], (k, v['default'], d[k])
    assert (d['method'], d['init'], d['tau'], d['la_epochs'], d['la_images'], d['epochs'], d['schedule'], d['out_dir']) == \
        ('logit_adjust', 'ssl', 1.0, 200, 'subset', 200, 'step', 'runs')
    assert (d['alpha'], d['T'], d['alpha_power']) == (0.3, 0.1, 1.0)  # the prior's setting chosen on validation
    assert '/runs/' in (ROOT/'.gitignore').read_text().splitlines()


def test_papermill_bad_parameter_stops_before_work(tmp_path):
    r = _papermill(tmp_path, ('imb', 0.5), ('dataset', 'synthetic'), ('out_dir', tmp_path/'runs'))
    assert r.returncode != 0 and 'imb=0.5 is invalid' in r.stderr + r.stdout
    assert not (tmp_path/'runs').exists()
    r = _papermill(tmp_path, ('dataset', 'synthetic'), ('epoch', 3), ('out_dir', tmp_path/'runs'))
    assert r.returncode != 0 and "unknown parameter(s) ['epoch']" in r.stderr + r.stdout


def test_notebook_keeps_parameters_tag():
    nb = json.loads((ROOT/'nbs'/'run_cifar_lt.ipynb').read_text())
    tagged = [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(tagged) == 1


def test_evaluate_only_run_records_its_cpu_time(tmp_path):
    # tau_norm trains no epoch: its one row (epoch 0) is evaluation only, and its CPU time must still be counted, not 0
    kw = {**TINY, 'out_dir': str(tmp_path)}
    run_experiment({**kw, 'method': 'ce'}, progress=False)
    t = run_experiment({**kw, 'method': 'tau_norm'}, progress=False)['timing']
    assert t['epoch_loop_s'] > 0 and t['epoch_loop_cpu_s'] > 0 and t['cpu_share'] > 0
    assert t['process_wall_s'] >= t['epoch_loop_s']
