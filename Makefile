# One-command set-up: each target creates .venv with the pinned torch if missing, installs dmf, then runs.
PYTHON ?= python3.11
VENV ?= .venv
# the CUDA build of torch; it also runs on CPUs (override for another CUDA/CPU wheel)
TORCH ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test test-fast test-slurm bench eval-official paper-digits clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# the embedded default: digits flow model -> DMF flow map -> FD table, on a CPU in under 10 minutes
demo: $(STAMP)
	$(PY) run.py

# the whole suite, slow end-to-end tests included, on two workers (pytest-xdist): 9 min 43 s to 10 min 31 s on the 2-core
# reference machine with the cores free (2026-11-28, 657 tests): at or just over the 10-minute budget. On a 2-core
# machine where `import torch, lightning` takes 10 s it took 21 min 16 s (2026-11-28, 660 tests): most
# tests launch run.py as a user does, and each launch pays that import
test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

# the SLURM tests (-m slurm) on a single-node cluster on loopback (launchers/slurm_local.sh; Debian packages,
# root); where no cluster can start it says why and skips them. Every step is time-bounded.
test-slurm: $(STAMP)
	timeout 900 launchers/slurm_local.sh install || echo "test-slurm: packages not installed; the SLURM tests will skip"
	timeout 2700 launchers/slurm_local.sh with timeout 2400 $(PY) -m pytest -q -m slurm tests/launchers

bench: $(STAMP)
	$(PY) bench/run_all.py

# the published DMF-XL/2 checkpoints at 1, 2, 4 steps (50k samples each) -> a table beside the paper's FID
NPROC ?= 8
eval-official: $(STAMP)
	$(PY) -m torch.distributed.run --nproc_per_node=$(NPROC) run.py mode=eval experiment=dmf_xl_256 eval=imagenet256 \
		ckpt=hf://kyungmnlee/DMF/dmf_xl_2_256.pt eval.out_dir=evals/dmf_xl_2_256 hydra.run.dir=evals/dmf_xl_2_256/hydra
	$(PY) -m torch.distributed.run --nproc_per_node=$(NPROC) run.py mode=eval experiment=dmf_xl_512 eval=imagenet512 \
		ckpt=hf://kyungmnlee/DMF/dmf_xl_2_512.pt eval.out_dir=evals/dmf_xl_2_512 hydra.run.dir=evals/dmf_xl_2_512/hydra

# the L/2 ablation in miniature on the digits (MF vs DMF x model guidance x REPA init): about 7 min on 2 free CPU
# cores (README; 36 min measured once on a loaded shared 2-core machine);
# the table lands in paper_runs/digits_ablation/digits_ablation.md
paper-digits: $(STAMP)
	$(PY) run.py -m paper=digits_ablation
	$(PY) run.py mode=collect paper=digits_ablation

clean:
	rm -rf outputs multirun paper_runs .pytest_cache
