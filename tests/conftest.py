import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent


def real_data_dir():
    "The folder with the real CIFAR-100 (from VISPRIOR_DATA), or None."
    d = os.environ.get('VISPRIOR_DATA')
    if d and ((Path(d)/'cifar100.npz').is_file() or (Path(d)/'cifar-100-python').is_dir()): return d
    return None


@pytest.fixture
def real_cifar100():
    d = real_data_dir()
    if d is None: pytest.skip('set VISPRIOR_DATA to a folder with cifar100.npz to run the real-data checks')
    from visprior.data import load_cifar
    return load_cifar('cifar100', d, download=False)


def pytest_configure(config):
    # torchvision 0.29 marks its JPEG codecs deprecated in favour of TorchCodec (not installed here); they still work
    config.addinivalue_line('filterwarnings', 'ignore:The image decoding and encoding capabilities:DeprecationWarning')


def _store_entries():
    "What the project's run store and LA cache hold (folder names), to catch a test that writes into them."
    return {str(p.relative_to(ROOT)) for d in ('results/la', 'results/runs', 'runs') if (ROOT/d).is_dir()
            for p in (ROOT/d).rglob('*') if p.is_dir()}


@pytest.fixture(scope='session', autouse=True)
def project_store_untouched():
    """No test may write into results/ or runs/: a tiny LA run once landed in results/la because a test left `init` to
    its default (which became 'ssl') and `la_root` to the project's cache. Every test passes tmp folders instead."""
    before = _store_entries()
    yield
    new = sorted(_store_entries() - before)
    assert not new, (f'the tests wrote into the project run store / LA cache (give them tmp out_dir / la_root), or a run trained in '
                     f'this checkout while they ran (run tests from another worktree then): {new[:10]}')
