"""What machine and software produced a result: recorded beside every training run's configuration.

Adversarial training is not bit-reproducible across CPUs, thread counts and library versions (float
summation order changes the trajectory: the same seed and code moved a Fashion-MNIST PGD-20 number by
3.4 points on another CPU), so a table's spread over seeds is run-to-run variation *on the machine
that ran it*; ``config.json`` says which machine that was.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

from memadv import __version__
from memadv.cpus import usable_cpus


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: str) -> dict[str, Any]:
    """Software versions, CPU, usable CPUs, torch threads and the training device of this process."""
    import numpy
    import torch
    env = {"memadv": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
           "numpy": numpy.__version__, "platform": platform.platform(), "cpu": cpu_model(),
           "usable_cpus": usable_cpus(), "torch_threads": torch.get_num_threads(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env
