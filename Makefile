# Small conveniences; the README's commands work without make.
.PHONY: test export clean bench cpu30

test:        ## notebooks' checks, then the pytest suite
	nbdev_test && pytest -q tests

export:      ## regenerate visprior/ from nbs/ and strip notebook noise (keeps papermill's parameters tag)
	nbdev_export && nbdev_clean

bench:       ## training throughput against the conventional recipe -> results/benchmarks/
	python -m visprior.bench

cpu30:       ## the CPU-budget CE run on CIFAR-100-LT (rho=100): 30 epochs, cosine
	mkdir -p results/runs/cpu30/cifar100-lt100-ce-s0
	papermill nbs/run_cifar_lt.ipynb results/runs/cpu30/cifar100-lt100-ce-s0/run.ipynb \
	  -p imb 100 -p epochs 30 -p schedule cosine -p out_dir results/runs/cpu30
