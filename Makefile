# The two commands of the README:
#   make pipeline   - set up the venv and run the main job on the embedded digits data set
#   make test       - set up the venv, start a single-node Slurm (memadv/slurm/dev-cluster.sh), run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/digits

.PHONY: venv pipeline test test-all test-fast slurm bench clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch 2.14.1 / torchvision 0.29.1 install from this machine's disk (see README)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test,cluster]'
	touch $@

venv: $(VENV)/.installed

pipeline: venv
	$(VENV)/bin/memadv pipeline --dataset digits --out $(RUN)

slurm:
	bash memadv/slurm/dev-cluster.sh start

test: venv slurm
	MEMADV_REQUIRE_SLURM=1 $(PY) -m pytest -q -m "not slow"

test-all: venv slurm
	MEMADV_REQUIRE_SLURM=1 $(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slurm"

bench: venv
	$(PY) bench/packed_vs_single.py
	$(PY) bench/blockwise_vs_dense.py

clean-venv:
	rm -rf $(VENV)
