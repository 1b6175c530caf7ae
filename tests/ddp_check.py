"""Run by tests/test_ddp.py under `torchrun`: an LA run and an evaluation, saving what this rank holds."""
import sys
import torch
from visprior.data import DeviceLoader, cifar_lt
from visprior.dist import init_from_env, is_dist, rank
from visprior.la import LAConfig, fit_la
from visprior.metrics import evaluate
from visprior.models import create_model

LA = LAConfig(epochs=2, ir_epochs=1, k=32, n_clusters=8, n_kmeans=2, batch_size=32, knn_every=1, model='resnet20',
              lr=0.05)


def main(out):
    dev = init_from_env('cpu')
    split = cifar_lt('synthetic', imb=3)
    tr = fit_la(split, LA, dev, progress=False)            # an IR epoch, then an LA epoch
    torch.manual_seed(0)
    model = create_model('resnet20', split.num_classes)
    mean, std = split.stats()
    z, y = evaluate(model, DeviceLoader(split.x_test, split.y_test, 16, mean=mean, std=std, distributed=is_dist()))
    torch.save(dict(bank=tr.bank.bank, labels=tr.labels, history=tr.history, z=z, y=y), f'{out}/rank{rank()}.pt')
    if is_dist(): torch.distributed.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
