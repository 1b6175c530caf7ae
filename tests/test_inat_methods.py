"""Every method runs unchanged on iNaturalist (the synthetic fixture in the official format), in one process."""
import json
import pytest

from visprior.experiment import run_experiment
from visprior.inat import write_synthetic_inat
from visprior.train import METHODS
from visprior.transfer import STAGE2  # CIFAR only: they hold every image's features in memory


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp('inat')
    kw = dict(dataset='inat2018', data_dir=str(write_synthetic_inat(d)), model='resnet50_tiny', image_size=64,
              workers=0, epochs=1, batch_size=16, warmup_epochs=0, lr=0.01, schedule='cosine', val_per_class=0,
              out_dir=str(d/'runs'), la_epochs=2, la_k=16, la_clusters=4, la_kmeans=2, la_root=str(d/'la'), crt_epochs=1, init='scratch')
    out = {}
    for m in ['ce'] + [m for m in METHODS if m not in ('ce', 'tau_norm', *STAGE2)]:   # CE first: KD, cRT, post hoc start from it
        out[m] = run_experiment({**kw, 'method': m}, progress=False)
    out['prior-ssl'] = run_experiment({**kw, 'method': 'prior', 'init': 'ssl'}, progress=False)
    with pytest.raises(ValueError, match='val2018'):                       # nothing to choose tau on: said plainly
        run_experiment({**kw, 'method': 'tau_norm'}, progress=False)
    for m in STAGE2:                                                       # refused before any work, said plainly
        with pytest.raises(ValueError, match='needs the images in memory'):
            run_experiment({**kw, 'method': m}, progress=False)
    return d, out


def test_every_method_finishes(runs):
    d, out = runs
    for m, r in out.items():
        assert 0 <= r['top1'] <= 100 and r['n_test'] == 18 and len(r['per_class']) == 6, m
    assert len(list((d/'la').iterdir())) == 1                              # one LA run, shared by every method


def test_prior_files_on_inat(runs):
    d, out = runs
    run = d/'runs'/'inat2018-prior-s0'
    assert (run/'similarity.npy').exists() and (run/'soft_targets.npy').exists()
    assert json.loads((run/'params.json').read_text())['model'] == 'resnet50_tiny'
