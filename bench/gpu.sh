#!/usr/bin/env bash
# GPU throughput of the estimator and of PGD-AT (issue 12, goal 4); about 5-8 minutes on one GPU.
# Usage: bench/gpu.sh [--device cuda:0] [--tiny]   (--device cpu --tiny: smoke mode, no GPU needed)
# The last line is the headline: models per GPU-hour and seconds per PGD-AT epoch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" "$here/gpu_speed.py" "$@"
