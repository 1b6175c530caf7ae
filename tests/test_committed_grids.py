"""Every committed grid file loads, and every run folder it names agrees with its entry (the run store never lies)."""
from pathlib import Path

import pytest

from visprior.experiment import check_run_dir, load_metrics
from visprior.grid import load_grid

ROOT = Path(__file__).parents[1]
GRIDS = sorted((Path(__file__).parents[1]/'nbs'/'grids').glob('*.toml'))


@pytest.mark.parametrize('grid', GRIDS, ids=[g.name for g in GRIDS])
def test_grid_loads_and_its_folders_match(grid):
    nb, runs = load_grid(grid)
    assert nb.exists() and runs
    names = [p.run_dir() for p in runs]
    assert len(set(names)) == len(names), 'two entries share a folder'
    for p in runs:
        run_dir, state = check_run_dir(p)  # raises if the folder holds a run with other parameters
        if state == 'done':
            m = load_metrics(run_dir)
            assert m['run'] == p.name and 0 <= m['top1'] <= 100


def test_sources30_names_its_oracles_and_pins_its_budget():
    _, runs = load_grid(Path(__file__).parents[1]/'nbs'/'grids'/'sources30.toml')
    assert {p.similarity for p in runs} >= {'la', 'permuted', 'uniform', 'colour', 'superclass', 'supervised'}
    assert {p.imb for p in runs} == {100} and {p.subset_seed for p in runs} == {0}
    assert all(str(p.out_dir).startswith('results/runs/sources30/') for p in runs)


def test_run_notebook_declares_its_parameters_parseably():
    "papermill must parse every line of the parameters cell (a quote in a comment once hid a parameter from it)."
    import papermill as pm
    from dataclasses import fields
    from visprior.experiment import RunParams
    nb = Path(__file__).parents[1]/'nbs'/'run_cifar_lt.ipynb'
    declared = set(pm.inspect_notebook(str(nb)))
    # image_size and workers are iNaturalist's (run_inat.ipynb); every CIFAR parameter is declared
    assert {f.name for f in fields(RunParams)} - declared == {'image_size', 'workers'}


def test_lainit30_pairs_every_la_row_with_the_same_run_from_scratch():
    "Issue 17 compares like with like: each init='ssl' run has a from-scratch run that differs only in init."
    from dataclasses import asdict
    _, runs = load_grid(Path(__file__).parents[1]/'nbs'/'grids'/'lainit30.toml')
    key = lambda p: tuple(sorted((k, str(v)) for k, v in asdict(p).items() if k not in ('init', 'out_dir')))
    scratch = {key(p) for p in runs if p.init == 'scratch'}
    la = [p for p in runs if p.init == 'ssl']
    assert la and {p.method for p in la} >= {'logit_adjust', 'ldam_drw', 'crt'}
    assert not [p.name for p in la if key(p) not in scratch], 'an LA-initialised run without its from-scratch pair'
    assert {p.precision for p in runs} == {'fp32'} and {p.epochs for p in runs} == {30}

def test_h4_pairs_every_la_budget_with_lainit30s_run_from_scratch():
    "H4's points differ from lainit30's from-scratch logit adjustment only in init and the LA budget, and keep apart."
    from dataclasses import asdict
    root = Path(__file__).parents[1]/'nbs'/'grids'
    _, h4 = load_grid(root/'h4.toml')
    _, lainit = load_grid(root/'lainit30.toml')
    key = lambda p: tuple(sorted((k, str(v)) for k, v in asdict(p).items()
                                 if k not in ('init', 'out_dir', 'la_epochs', 'la_images', 'la_objective')))
    scratch = {key(p) for p in lainit if p.init == 'scratch'}
    assert h4 and {p.init for p in h4} == {'ssl'} and {p.method for p in h4} == {'logit_adjust'}
    assert not [p.name for p in h4 if key(p) not in scratch], 'an H4 point without its from-scratch pair'
    point = lambda p: (p.la_images, p.la_epochs, p.la_objective)
    assert ('subset', 200, 'la') not in {point(p) for p in h4}, "that point is lainit30's: it would train twice"
    assert {p.la_images for p in h4} >= {'subset', 'subset25', 'subset50', 'balanced'}
    assert {p.la_objective for p in h4} == {'la', 'simclr'}  # SimCLR: the other SSL objective, on the same images
    for pts in ({point(p) for p in h4 if p.seed == s} for s in (0, 1, 2)):  # every point at every seed
        assert pts == {point(p) for p in h4 if p.seed == 0}, pts
    assert len({p.run_dir() for p in h4}) == len(h4), 'two LA budgets would share a run folder'


def test_every_committed_run_folder_is_named_by_a_committed_grid():
    """A grid entry that leaves a parameter to RunParams' default changes its folder when that default changes (as
    init did, 'scratch' -> 'ssl'): its finished runs would be orphaned and silently trained again under a new name.
    So every committed run folder must be some grid entry's folder; the one hand-made rerun is listed by name."""
    root = Path(__file__).parents[1]
    named = {p.run_dir().resolve() for g in GRIDS for p in load_grid(g)[1]}
    hand_made = {(root/'results/runs/repro/cifar100-lt1-ce-s0').resolve()}  # results/README.md: a reproducibility rerun
    committed = {f.parent.resolve() for f in (root/'results'/'runs').rglob('metrics.json')}
    assert committed, 'no committed run folder found'
    orphans = sorted(str(d.relative_to(root)) for d in committed - named - hand_made)
    assert not orphans, f'run folders no committed grid names (a default changed under a grid entry?): {orphans}'


def test_no_synthetic_test_data_in_the_project_store():
    """The notebooks' checks (`nbdev_test`, which CI runs just before pytest) train on the tiny synthetic dataset and must
    write only to temporary folders. A leak once put `results/la/synthetic-lt5-...` in the project's LA cache (a check
    that left `init` at its default 'ssl' and `la_root` at the project's). The conftest guard covers pytest only."""
    leaked = sorted(str(p.relative_to(ROOT)) for d in ('results', 'runs') if (ROOT/d).is_dir()
                    for p in (ROOT/d).rglob('synthetic*'))
    assert not leaked, f'synthetic test runs in the project store (a check must pass tmp out_dir / la_root): {leaked[:10]}'
