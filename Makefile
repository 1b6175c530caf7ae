# Small conveniences; the README's commands work without make.
.PHONY: test export bench cpu30 la-budget la prior grid sweep paper grid-paper200

CPU30 = -p imb 100 -p epochs 30 -p schedule cosine -p out_dir results/runs/cpu30

test:        ## notebooks' checks, then the pytest suite
	nbdev_test && pytest -q tests

export:      ## regenerate visprior/ from nbs/ and strip notebook noise (keeps papermill's parameters tag)
	nbdev_export && nbdev_clean

bench:       ## training throughput against the conventional recipe, and LA against CE -> results/benchmarks/
	python -m visprior.bench

grid:        ## the CPU grid of nbs/grids/cpu30.toml (skips finished runs; GRIDFLAGS="--dry-run" lists what is left)
	python -m visprior.grid nbs/grids/cpu30.toml $(GRIDFLAGS)

sweep:       ## the prior's alpha / T sweep at the CPU budget (chosen on the validation split)
	python -m visprior.grid nbs/grids/prior_sweep.toml $(GRIDFLAGS)

grid-paper200: ## the 200-epoch paper budget, for GPUs
	python -m visprior.grid nbs/grids/paper200.toml $(GRIDFLAGS)

paper:       ## every table and figure in results/tables and results/figures, from the saved runs only
	papermill nbs/paper.ipynb out-paper.ipynb

cpu30:       ## the CPU-budget CE run on CIFAR-100-LT (rho=100): 30 epochs, cosine
	mkdir -p results/runs/cpu30/cifar100-lt100-ce-s0
	papermill nbs/run_cifar_lt.ipynb results/runs/cpu30/cifar100-lt100-ce-s0/run.ipynb $(CPU30)

la-budget:   ## LA configurations compared at 15 epochs, without the test set -> results/la_budget/
	mkdir -p results/la_budget
	papermill nbs/la_budget.ipynb results/la_budget/run.ipynb

la:          ## LA at the default configuration, 200 epochs (resumable; cached in results/la/)
	mkdir -p results/la_budget/e200
	papermill nbs/la_budget.ipynb results/la_budget/e200/run.ipynb -p epochs 200 -p configs k1024-c200-h3 \
	  -p out_dir results/la_budget/e200

prior:       ## the prior from scratch and from the LA backbone, at the CPU budget (runs LA first if not cached)
	for init in scratch ssl; do n=cifar100-lt100-prior$$( [ $$init = ssl ] && echo -ssl )-s0; mkdir -p results/runs/cpu30/$$n; \
	  papermill nbs/run_cifar_lt.ipynb results/runs/cpu30/$$n/run.ipynb $(CPU30) -p method prior -p init $$init || exit 1; done
