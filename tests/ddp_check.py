"""Run by tests/test_ddp.py under `torchrun`: LA on the synthetic iNaturalist fixture, and a distributed evaluation,
saving what this rank holds."""
import sys
import torch
from visprior.data import DeviceLoader, cifar_lt
from visprior.dist import init_from_env, is_dist, rank
from visprior.inat import inat_split
from visprior.la import LAConfig, fit_la
from visprior.metrics import evaluate
from visprior.models import create_model

LA = LAConfig(epochs=2, ir_epochs=1, k=16, n_clusters=4, n_kmeans=2, batch_size=16, knn_every=1,
              model='resnet50_tiny', image_size=64, lr=0.05)


def main(out, fixture):
    dev = init_from_env('cpu')
    split = inat_split(fixture)
    tr = fit_la(split, LA, dev, progress=False, workers=0)  # an IR epoch, then an LA epoch, on JPEGs
    cifar = cifar_lt('synthetic', imb=3)
    torch.manual_seed(0)
    model = create_model('resnet20', cifar.num_classes)
    mean, std = cifar.stats()
    z, y = evaluate(model, DeviceLoader(cifar.x_test, cifar.y_test, 16, mean=mean, std=std, distributed=is_dist()))
    torch.save(dict(bank=tr.bank.bank, labels=tr.labels, history=tr.history, z=z, y=y), f'{out}/rank{rank()}.pt')
    if is_dist(): torch.distributed.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
