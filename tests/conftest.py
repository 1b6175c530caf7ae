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
