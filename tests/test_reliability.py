"""The run store never lies: each case of the reliability issue, with a check that fails without its fix."""
import ast, json, os, subprocess, sys
from pathlib import Path
import pytest
import torch

from visprior.experiment import make_params, run_experiment
from visprior.grid import load_grid, run_grid, select
from visprior.utils import folder_lock

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(dataset='synthetic', imb=5, epochs=2, batch_size=32, lr=0.05, warmup_epochs=1, schedule='cosine', method='ce', init='scratch')
NAME = 'synthetic-lt5-ce-s0'


def _grid(tmp_path, body, defaults=''):
    g = tmp_path/'grid.toml'
    g.write_text(f'notebook = "{ROOT}/nbs/run_cifar_lt.ipynb"\n[defaults]\ndataset = "synthetic"\nimb = 5\nepochs = 2\ninit = "scratch"\n'
                 f'batch_size = 32\nschedule = "cosine"\nwarmup_epochs = 1\nmethod = "ce"\nout_dir = "{tmp_path}/runs"\n'
                 + defaults + body)
    return g


# 1. the grid knows a run by all of its parameters
def test_grid_sweep_that_would_share_a_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r'differ in lr \(0.1 / 0.2\).*out_dir template'):
        load_grid(_grid(tmp_path, '[[runs]]\nlr = [0.1, 0.2, 0.3]\n'))
    _, runs = load_grid(_grid(tmp_path, f'[[runs]]\nlr = [0.1, 0.2, 0.3]\nout_dir = "{tmp_path}/runs/lr{{lr:g}}"\n'))
    assert len(runs) == 3


def test_edited_grid_with_other_parameters_in_a_finished_folder_is_an_error(tmp_path):
    run_experiment({**TINY, 'out_dir': str(tmp_path/'runs')}, progress=False)
    g = _grid(tmp_path, '[[runs]]\nlr = 0.2\n')  # the grid was edited after the run: lr 0.05 -> 0.2
    with pytest.raises(ValueError, match=r'lr saved 0.05, asked 0.2'):
        run_grid(g, dry_run=True, log=lambda s: None)
    g = _grid(tmp_path, '[[runs]]\nlr = 0.05\n')
    assert run_grid(g, dry_run=True, log=lambda s: None) == dict(total=1, skipped=1, ran=0, failed=[])


def test_only_filter_that_matches_nothing_is_an_error(tmp_path):
    g = _grid(tmp_path, '[[runs]]\nmethod = ["ce", "focal"]\n')
    _, runs = load_grid(g)
    with pytest.raises(ValueError, match="no run of the grid has method='cee'"):
        select(runs, ['method=cee'])
    r = subprocess.run([sys.executable, '-m', 'visprior.grid', str(g), '--dry-run', '--only', 'method=cee'],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and 'error:' in r.stderr and 'Traceback' not in r.stderr


def test_notebook_params_are_checked_before_any_run(tmp_path):
    g = _grid(tmp_path, '[[runs]]\nmethod = "ce"\n[notebook_params]\nnproc = 2\n')
    with pytest.raises(ValueError, match=r"\[notebook_params\] \['nproc'\]"):
        load_grid(g)
    assert not (tmp_path/'runs').exists()


# 2. resuming never unpickles
class _Payload:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


def test_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    run_experiment({**TINY, 'epochs': 3, 'out_dir': str(tmp_path)}, progress=False, stop_after=1)
    ckpt, marker = tmp_path/NAME/'ckpt.pt', tmp_path/'pwned'
    state = torch.load(ckpt, weights_only=True)
    state['history'] = _Payload(marker)
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match='not written by visprior'):
        run_experiment({**TINY, 'epochs': 3, 'out_dir': str(tmp_path)}, progress=False)
    assert not marker.exists()


def test_crafted_la_checkpoint_is_refused_without_running_code(tmp_path):
    from visprior.data import cifar_lt
    from visprior.la import LAConfig, fit_la
    split, marker = cifar_lt('synthetic', imb=3), tmp_path/'pwned'
    cfg = LAConfig(epochs=2, ir_epochs=1, k=16, n_clusters=4, n_kmeans=1, batch_size=32, knn_every=100)
    fit_la(split, cfg, ckpt_path=tmp_path/'la.pt', stop_after=1, progress=False)
    state = torch.load(tmp_path/'la.pt', weights_only=True)
    state['bank'] = _Payload(marker)
    torch.save(state, tmp_path/'la.pt')
    with pytest.raises(ValueError, match='not written by visprior'):
        fit_la(split, cfg, ckpt_path=tmp_path/'la.pt', progress=False)
    assert not marker.exists()


def test_corrupt_checkpoint_names_the_file(tmp_path):
    run_experiment({**TINY, 'epochs': 3, 'out_dir': str(tmp_path)}, progress=False, stop_after=1)
    ckpt = tmp_path/NAME/'ckpt.pt'
    ckpt.write_bytes(ckpt.read_bytes()[:500])
    with pytest.raises(ValueError, match=f'checkpoint {ckpt} cannot be read: it is truncated or corrupt'):
        run_experiment({**TINY, 'epochs': 3, 'out_dir': str(tmp_path)}, progress=False)


# 3. a diverged run is never saved as finished
@pytest.mark.parametrize('epochs', [1, 2])
def test_diverged_run_is_not_marked_finished(tmp_path, epochs):
    with pytest.raises(FloatingPointError, match='diverged'):
        run_experiment({**TINY, 'epochs': epochs, 'warmup_epochs': 0, 'lr': 1e4, 'out_dir': str(tmp_path)}, progress=False)
    assert not (tmp_path/NAME/'metrics.json').exists()


def test_non_finite_metric_is_refused():
    from visprior.experiment import check_finite_summary
    with pytest.raises(FloatingPointError, match='ece'):
        check_finite_summary(dict(top1=10.0, ece=None, per_class=[10.0]), [])
    check_finite_summary(dict(top1=10.0, ece=3.0, per_class=[10.0]), [dict(epoch=1, train_loss=1.0, top1=10.0)])


# 4. provenance names the checkout that holds the package
def test_provenance_is_the_packages_checkout(tmp_path):
    other = tmp_path/'other'; other.mkdir()
    (other/'settings.ini').write_text('[DEFAULT]\nrepo = visprior\n')
    for a in (['init', '-q'], ['add', '.'], ['-c', 'user.name=x', '-c', 'user.email=x@x', 'commit', '-qm', 'x']):
        subprocess.run(['git', *a], cwd=other, check=True, capture_output=True)
    code = ('import json; from visprior.utils import git_info, resolve_out_dir; '
            'print(json.dumps([git_info()["commit"], str(resolve_out_dir("runs"))]))')
    r = subprocess.run([sys.executable, '-c', code], cwd=other, capture_output=True, text=True, check=True)
    commit, out = json.loads(r.stdout)
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert commit == head and out == str(ROOT/'runs')


# 5. params.json: a finished run without it is never overwritten; a failed start blocks nothing
def test_finished_run_without_params_is_not_overwritten(tmp_path):
    run_experiment({**TINY, 'out_dir': str(tmp_path)}, progress=False)
    run = tmp_path/NAME
    (run/'params.json').unlink()
    before = (run/'metrics.json').read_text()
    with pytest.raises(ValueError, match='no params.json'):
        run_experiment({**TINY, 'lr': 0.2, 'out_dir': str(tmp_path)}, progress=False)
    assert (run/'metrics.json').read_text() == before


def test_run_that_failed_before_training_blocks_no_retry(tmp_path):
    empty = tmp_path/'nodata'; empty.mkdir()
    bad = dict(dataset='cifar100', imb=100, method='ce', init='scratch', epochs=1, data_dir=str(empty), out_dir=str(tmp_path/'runs'))
    with pytest.raises(FileNotFoundError):
        run_experiment(bad, progress=False)
    assert not (tmp_path/'runs'/'cifar100-lt100-ce-s0'/'params.json').exists()


# 6. imb above a class's maximum
@pytest.mark.parametrize('imb', [501, 1000, float('inf'), float('nan')])
def test_imb_above_the_class_maximum_is_refused_before_work(tmp_path, imb):
    with pytest.raises(ValueError, match='imb='):
        run_experiment(dict(dataset='cifar100', imb=imb, method='ce', init='scratch', out_dir=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []


# 9. the smaller ones
def test_device_must_be_a_real_device_name():
    for bad in ('cudaXYZ', 'cuda:', 'cuda:x', 'gpu'):
        with pytest.raises(ValueError, match=f"device='{bad}'"):
            make_params(device=bad)
    assert make_params(device='cuda:3').device == 'cuda:3'


def test_cli_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'visprior.cli', '--dataset', 'synthetic', '--imb', '0.5', '--out_dir',
                        str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip().startswith('error: imb=0.5 is invalid'), r.stderr
    assert 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_two_processes_cannot_train_one_folder(tmp_path):
    run = tmp_path/NAME
    with folder_lock(run):  # another process is training this folder
        code = (f'from visprior.experiment import run_experiment; '
                f'run_experiment({dict(TINY, out_dir=str(tmp_path))!r}, progress=False)')
        r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
        assert r.returncode != 0 and 'in use by another process' in r.stderr, r.stderr[-2000:]
    run_experiment({**TINY, 'out_dir': str(tmp_path)}, progress=False)  # free again once the lock is released
    assert (run/'metrics.json').exists()


def test_temporary_checkpoint_of_a_killed_writer_is_removed(tmp_path):
    run_experiment({**TINY, 'epochs': 3, 'out_dir': str(tmp_path)}, progress=False, stop_after=1)
    dead = subprocess.Popen(['true']); dead.wait()
    stale = tmp_path/NAME/f'.ckpt.pt.{dead.pid}.tmp'
    stale.write_bytes(b'')  # what a SIGKILL mid-write leaves
    run_experiment({**TINY, 'epochs': 3, 'out_dir': str(tmp_path)}, progress=False)
    assert not stale.exists()


def _imports(path, pkg='visprior') -> set:
    "Every visprior module `path` imports, at any depth of the file (function-level imports too)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: out.add(node.module.split('.')[0])
            elif node.module and node.module.startswith(pkg + '.'): out.add(node.module.split('.')[1])
            elif node.module == pkg or (node.level == 1 and not node.module):
                out |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split('.')[1] for a in node.names if a.name.startswith(pkg + '.')}
    return out


def test_package_has_no_import_cycle():
    mods = {p.stem: p for p in (ROOT/'visprior').glob('*.py') if p.stem not in ('__init__', '_modidx')}
    graph = {m: _imports(p) & set(mods) - {m} for m, p in mods.items()}
    state = {}
    def visit(m, path):
        if state.get(m) == 1: raise AssertionError('import cycle: ' + ' -> '.join(path + [m]))
        if state.get(m) == 2: return
        state[m] = 1
        for n in sorted(graph[m]): visit(n, path + [m])
        state[m] = 2
    for m in sorted(graph): visit(m, [])
