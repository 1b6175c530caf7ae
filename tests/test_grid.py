"""The grid runner: a bad entry stops it before any run; finished runs are skipped; an interrupted run resumes."""
import json
import pytest

from visprior.experiment import run_experiment
from visprior.grid import load_grid, run_grid
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path, body):
    g = tmp_path/'grid.toml'
    g.write_text(f'notebook = "{ROOT}/nbs/run_cifar_lt.ipynb"\n[defaults]\ndataset = "synthetic"\nimb = 5\nepochs = 2\ninit = "scratch"\n'
                 f'batch_size = 32\nschedule = "cosine"\nwarmup_epochs = 1\nout_dir = "{tmp_path}/runs"\n' + body)
    return g


def test_bad_entry_fails_before_any_run(tmp_path):
    g = _write(tmp_path, '[[runs]]\nmethod = ["ce", "focal"]\n[[runs]]\nmethod = "ce"\nlr = [0.1, -1]\n')
    with pytest.raises(ValueError, match=r'block 2.*lr=-1'):
        run_grid(g, log=lambda s: None)
    assert not (tmp_path/'runs').exists()


def test_skip_and_resume(tmp_path):
    g = _write(tmp_path, '[[runs]]\nmethod = ["tau_norm", "ce", "logit_adjust"]\n')
    _, runs = load_grid(g)
    assert [p.method for p in runs] == ['ce', 'logit_adjust', 'tau_norm']  # the CE run before what needs it
    tiny = dict(dataset='synthetic', imb=5, epochs=2, batch_size=32, schedule='cosine', warmup_epochs=1,
                init='scratch', out_dir=str(tmp_path/'runs'))
    run_experiment({**tiny, 'method': 'ce'}, progress=False)                  # finished before the grid starts
    run_experiment({**tiny, 'method': 'logit_adjust'}, progress=False, stop_after=1)  # interrupted after 1 epoch
    ce = tmp_path/'runs'/'synthetic-lt5-ce-s0'/'metrics.json'
    t_ce = ce.stat().st_mtime_ns
    log = []
    r = run_grid(g, log=log.append)
    assert r == dict(total=3, skipped=1, ran=2, failed=[]) and ce.stat().st_mtime_ns == t_ce
    la = tmp_path/'runs'/'synthetic-lt5-logit_adjust-s0'
    assert len((la/'history.csv').read_text().splitlines()) == 3 and not (la/'ckpt.pt').exists()
    assert (la/'run.ipynb').exists() and json.loads((la/'metrics.json').read_text())['budget']['epochs'] == 2
    assert run_grid(g, log=log.append) == dict(total=3, skipped=3, ran=0, failed=[])   # everything done: nothing runs
