"""DDP on the CPU with gloo, through torchrun: 2 processes against 1, on tiny synthetic data."""
import os, shutil, subprocess, sys
from pathlib import Path
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = shutil.which('torchrun') or 'torchrun'


def torchrun(nproc, *args, timeout=300):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    env.pop('IN_TEST', None)
    r = subprocess.run([TORCHRUN, '--standalone', f'--nproc_per_node={nproc}', *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp')
    torchrun(2, ROOT/'tests'/'ddp_check.py', out)
    return [torch.load(out/f'rank{r}.pt', weights_only=False) for r in (0, 1)]


def test_memory_bank_identical_on_both_ranks(two_ranks):
    a, b = two_ranks
    assert torch.equal(a['bank'], b['bank'])          # after an IR epoch and an LA epoch
    assert torch.equal(a['labels'], b['labels'])      # k-means from rank 0, broadcast
    drop = lambda h: [{k: v for k, v in r.items() if not k.endswith('_time')} for r in h]
    assert drop(a['history']) == drop(b['history'])    # the same loss and monitors on both ranks
    assert a['history'][1]['phase'] == 'LA'


def test_distributed_evaluation_matches_one_process(two_ranks):
    sys.path.insert(0, str(ROOT/'tests'))
    from ddp_check import cifar_lt, create_model, DeviceLoader, evaluate
    split = cifar_lt('synthetic', imb=3)
    torch.manual_seed(0)
    model = create_model('resnet20', split.num_classes)
    mean, std = split.stats()
    z, y = evaluate(model, DeviceLoader(split.x_test, split.y_test, 16, mean=mean, std=std))
    for r in two_ranks:   # every rank holds every test image's logits, in order, each once
        assert torch.equal(r['y'], y)
        assert torch.allclose(r['z'], z, atol=1e-5)
