# One-command set-up: each target creates .venv with the pinned torch if missing, installs dmf, then runs.
PYTHON ?= python3.11
VENV ?= .venv
# the CUDA build of torch; it also runs on CPUs (override for another CUDA/CPU wheel)
TORCH ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test test-slow test-slurm bench eval-official paper-digits clean

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

# the suite without the tests marked slow, on two workers (pytest-xdist): the budget is 10 minutes on 2 cores.
# Scripts the tests launch as a user does (`python run.py ...`) start from a warm interpreter (tests/warm_python.py)
# that has torch and Lightning imported: `import torch, lightning` alone takes 10 s on some 2-core machines. 8 min 40 s
# on such a machine (2026-11-28, 626 tests; the whole suite with every launch cold took 22 min 19 s there).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

# the slow end-to-end tests: two ranks (DDP, FSDP, torchrun), pipelines and sweeps through run.py, resume chains,
# the offline GPU kernel build, bench/gpu_all.sh's commands at tiny sizes. CI (.ci/run) runs them after `make test`.
# 13 min 8 s on the same machine (37 tests, before the 9 gpu_all.sh ones: 3 min 42 s alone on 2 workers).
test-slow: $(STAMP)
	$(PY) -m pytest -q -n 2 -m slow

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
