# Small conveniences; the README's commands work without make.
.PHONY: test export bench cpu30 la-budget la prior grid sweep sources transfer lainit h4 paper grid-paper200

test:        ## notebooks' checks, then the pytest suite
	nbdev_test && pytest -q tests

export:      ## regenerate visprior/ from nbs/ and strip notebook noise (keeps papermill's parameters tag)
	nbdev_export && nbdev_clean

bench:       ## training throughput against the conventional recipe, and LA against CE -> results/benchmarks/
	python -m visprior.bench --save

grid:        ## the CPU grid of nbs/grids/cpu30.toml (skips finished runs; GRIDFLAGS="--dry-run" lists what is left)
	python -m visprior.grid nbs/grids/cpu30.toml $(GRIDFLAGS)

sweep:       ## the prior's alpha / T sweep at the CPU budget (chosen on the validation split)
	python -m visprior.grid nbs/grids/prior_sweep.toml $(GRIDFLAGS)

grid-paper200: ## the 200-epoch paper budget, for GPUs
	python -m visprior.grid nbs/grids/paper200.toml $(GRIDFLAGS)

sources:     ## issue 15's grid: similarity sources, controls and oracles, paired with CE (fp32, this machine)
	python -m visprior.grid nbs/grids/sources30.toml $(GRIDFLAGS)

transfer:    ## issue 16's second stages (a), (b) and (c) on the frozen features of the sources30 CE runs, with controls
	python -m visprior.grid nbs/grids/transfer30.toml $(GRIDFLAGS)

lainit:      ## issue 17's grid: balancing methods from the LA backbone, paired by seed with the same from scratch
	python -m visprior.grid nbs/grids/lainit30.toml $(GRIDFLAGS)

h4:          ## issue 17's H4 grid: logit adjustment from LA backbones of 12 / 50 / 100 LA epochs (after lainit)
	python -m visprior.grid nbs/grids/h4.toml $(GRIDFLAGS)

paper:       ## every table and figure in results/tables and results/figures, from the saved runs only
	papermill nbs/paper.ipynb out-paper.ipynb
	papermill nbs/sources.ipynb out-sources.ipynb
	papermill nbs/transfer.ipynb out-transfer.ipynb
	papermill nbs/transfer.ipynb out-transfer-lainit.ipynb -p runs_dir results/runs/sources30/la-init -p init ssl -p table_name transfer_lainit
	papermill nbs/lainit.ipynb out-lainit.ipynb

cpu30:       ## the CPU-budget CE run on CIFAR-100-LT (rho=100, seed 0): 30 epochs, cosine
	python -m visprior.grid nbs/grids/cpu30.toml --only imb=100 --only seed=0 --only init=scratch --only method=ce

la-budget:   ## LA configurations compared at 15 epochs, without the test set -> results/la_budget/
	mkdir -p results/la_budget
	papermill nbs/la_budget.ipynb results/la_budget/run.ipynb

la:          ## LA at the default configuration, 200 epochs (resumable; cached in results/la/)
	mkdir -p results/la_budget/e200
	papermill nbs/la_budget.ipynb results/la_budget/e200/run.ipynb -p epochs 200 -p configs k1024-c200-h3 \
	  -p out_dir results/la_budget/e200

prior:       ## issue 3's runs: CE, the prior and kNN, from scratch and from the LA backbone, rho=100, seed 0 (LA first if not cached)
	python -m visprior.grid nbs/grids/cpu30.toml --only imb=100 --only seed=0 --only method=ce,prior,knn
