"""DDP on the CPU with gloo, through torchrun, on the synthetic iNaturalist fixture: 2 processes against 1."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch

from visprior.inat import write_synthetic_inat

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = shutil.which('torchrun') or 'torchrun'


def _cmd(nproc, *args):
    return [TORCHRUN, '--standalone', f'--nproc_per_node={nproc}', *map(str, args)]


def _env():
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    env.pop('IN_TEST', None)
    return env


def torchrun(nproc, *args, timeout=300):
    r = subprocess.run(_cmd(nproc, *args), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


@pytest.fixture(scope='module')
def fixture(tmp_path_factory):
    return write_synthetic_inat(tmp_path_factory.mktemp('inat'))


def train_args(fixture, out, epochs=1, lr=0.001):
    return ['-m', 'visprior.cli', '--dataset', 'inat2018', '--data_dir', fixture, '--model', 'resnet50_tiny',
            '--image_size', 64, '--workers', 0, '--epochs', epochs, '--batch_size', 16, '--warmup_epochs', 0,
            '--schedule', 'cosine', '--lr', lr, '--out_dir', out, '--quiet', '--method', 'ce', '--init', 'scratch']


@pytest.fixture(scope='module')
def two_ranks(fixture, tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp')
    torchrun(2, ROOT/'tests'/'ddp_check.py', out, fixture)
    return [torch.load(out/f'rank{r}.pt', weights_only=False) for r in (0, 1)]


def test_memory_bank_identical_on_both_ranks(two_ranks):
    a, b = two_ranks
    assert torch.equal(a['bank'], b['bank'])          # after an IR epoch and an LA epoch
    assert torch.equal(a['labels'], b['labels'])      # k-means from rank 0, broadcast
    drop = lambda h: [{k: v for k, v in r.items() if not k.endswith('_time')} for r in h]
    assert drop(a['history']) == drop(b['history'])    # the same loss and monitors on both ranks
    assert a['history'][1]['phase'] == 'LA'


def test_distributed_evaluation_matches_one_process(two_ranks):
    from visprior.data import DeviceLoader, cifar_lt
    from visprior.metrics import evaluate
    from visprior.models import create_model
    split = cifar_lt('synthetic', imb=3)
    torch.manual_seed(0)
    model = create_model('resnet20', split.num_classes)
    mean, std = split.stats()
    z, y = evaluate(model, DeviceLoader(split.x_test, split.y_test, 16, mean=mean, std=std))
    for r in two_ranks:   # every rank holds every test image's logits, in order, each once
        assert torch.equal(r['y'], y)
        assert torch.allclose(r['z'], z, atol=1e-5)


def _history(run):
    return [{k: v for k, v in r.items() if not k.endswith('_time')}
            for r in __import__('csv').DictReader(open(run/'history.csv'))]


def test_two_processes_agree_with_one(fixture, tmp_path):
    """Same global batch (16 = 2 x 8), same images in each batch, same crops (seeded per image).
    What differs: BatchNorm statistics are per rank (8 images, not 16; SyncBatchNorm needs a GPU), and the 49 training
    images are padded to 50 for two ranks. Stated tolerance: the epoch's training loss within 10% (relative). Test top-1
    is not compared: after one epoch of 49 images the predictions of 18 test images sit near chance and swing by whole
    classes with the BatchNorm statistics (on this project's AVX2 machine in fp32: 0 of 18 against 5 of 18, while the
    training losses agree within the tolerance); that distributed evaluation equals one process's is tested above."""
    for n in (1, 2): torchrun(n, *train_args(fixture, tmp_path/f'p{n}'))
    m = [json.loads((tmp_path/f'p{n}'/'inat2018-ce-s0'/'metrics.json').read_text()) for n in (1, 2)]
    h = [_history(tmp_path/f'p{n}'/'inat2018-ce-s0') for n in (1, 2)]
    l1, l2 = float(h[0][0]['train_loss']), float(h[1][0]['train_loss'])
    assert abs(l1 - l2) / l1 < 0.10, (l1, l2)
    assert all(0 <= x['top1'] <= 100 for x in m)
    assert m[1]['n_test'] == m[0]['n_test'] == 18 and m[0]['budget']['epochs'] == 1


def _children(pid):
    "Pids whose parent is `pid`, from /proc."
    out = []
    for d in Path('/proc').iterdir():
        if d.name.isdigit():
            try: fields = (d/'stat').read_text().rsplit(')', 1)[1].split()
            except OSError: continue
            if int(fields[1]) == pid: out.append(int(d.name))
    return out


def _gone(pid):
    "The process has exited (or is a zombie, which holds no files and so no locks)."
    try: return (Path('/proc')/str(pid)/'stat').read_text().rsplit(')', 1)[1].split()[0] == 'Z'
    except OSError: return True


def kill_all(p, timeout=60):
    """SIGKILL torchrun and every rank, as a preempted job is killed, and wait until all are dead. torchrun starts each
    rank in a session of its own, so killing torchrun's process group alone leaves the ranks running (and holding the
    run folder's lock) for a while: the race that once failed this test in CI."""
    workers = _children(p.pid)
    assert workers, 'torchrun had started no ranks'
    os.killpg(p.pid, signal.SIGKILL)
    for w in workers:
        try: os.killpg(w, signal.SIGKILL)
        except ProcessLookupError: pass
    p.wait()
    t0 = time.time()
    while not all(map(_gone, workers)):
        assert time.time() - t0 < timeout, f'ranks {workers} still alive {timeout} s after SIGKILL'
        time.sleep(0.05)


def test_killed_mid_run_resumes_to_the_same_result(fixture, tmp_path):
    args = train_args(fixture, tmp_path/'killed', epochs=4, lr=0.01)
    p = subprocess.Popen(_cmd(2, *args), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    ckpt = tmp_path/'killed'/'inat2018-ce-s0'/'ckpt.pt'
    t0 = time.time()
    while not ckpt.exists() and p.poll() is None and time.time() - t0 < 240: time.sleep(0.05)
    assert ckpt.exists(), 'no checkpoint was written'
    kill_all(p)                                             # killed during epoch 2 (or later), every rank at once
    assert not (tmp_path/'killed'/'inat2018-ce-s0'/'metrics.json').exists()
    torchrun(2, *args)                                      # the same command resumes
    torchrun(2, *train_args(fixture, tmp_path/'straight', epochs=4, lr=0.01))
    a, b = (_history(tmp_path/d/'inat2018-ce-s0') for d in ('killed', 'straight'))
    assert [r['epoch'] for r in a] == ['1', '2', '3', '4']
    assert a == b                                           # bit for bit the run that was never killed


def test_run_inat_notebook_launches_torchrun(fixture, tmp_path):
    args = [sys.executable, '-m', 'papermill', str(ROOT/'nbs'/'run_inat.ipynb'), str(tmp_path/'out.ipynb')]
    for k, v in dict(nproc=2, data_dir=fixture, model='resnet50_tiny', image_size=64, workers=0, epochs=1, batch_size=16,
                     warmup_epochs=0, eval_every=1, lr=0.01, out_dir=tmp_path/'runs').items():
        args += ['-p', k, str(v)]
    r = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    m = json.loads((tmp_path/'runs'/'inat2018-ce-s0'/'metrics.json').read_text())
    assert m['budget']['epochs'] == 1 and m['n_test'] == 18 and 'torchrun' in (tmp_path/'out.ipynb').read_text()
