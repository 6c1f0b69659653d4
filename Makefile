# The two commands of the README:
#   make pipeline   - set up the venv and run the main job on the embedded digits data set
#   make test       - set up the venv, start a single-node Slurm (memadv/slurm/dev-cluster.sh), install
#                     Debian's dataset-fashion-mnist if missing, run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= runs/digits

FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: venv pipeline test test-all test-fast slurm fashion-mnist bench clean-venv

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

# Fashion-MNIST as Debian packages it (the real-file tests and `--dataset fashion-mnist` read it);
# installing needs root, like the slurm target.
fashion-mnist:
	@test -f $(FASHION_MNIST) || { \
	  [ "$$(id -u)" -eq 0 ] || { echo "make: Debian's dataset-fashion-mnist is missing and installing it needs root: sudo apt-get install dataset-fashion-mnist" >&2; exit 1; }; \
	  command -v apt-get >/dev/null || { echo "make: dataset-fashion-mnist is missing and there is no apt-get to install it" >&2; exit 1; }; \
	  echo "installing dataset-fashion-mnist"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }

test: venv slurm fashion-mnist
	MEMADV_REQUIRE_SLURM=1 $(PY) -m pytest -q -m "not slow"

test-all: venv slurm fashion-mnist
	MEMADV_REQUIRE_SLURM=1 $(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slurm"

bench: venv
	$(PY) bench/packed_vs_single.py
	$(PY) bench/blockwise_vs_dense.py

clean-venv:
	rm -rf $(VENV)
