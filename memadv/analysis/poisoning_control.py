"""C3's poisoning control: do the atypical examples that *poison* lower typical-test accuracy?

The paper explains Section 3.2's finding (C3: the more atypical training examples adversarial
training must fit, the lower its typical-test accuracy) by poisoning: an atypical example's
adversarial version looks like another class, and fitting it pulls that class's typical examples
with it (Sec. 3.2, Fig. 3; the poisoning score of Eq. 4). C3 alone cannot tell that apart from
"more, harder examples cost accuracy". The control holds the number of added examples fixed and
varies only their poisoning:

* the atypical training examples D_atyp are ranked by their poisoning score q (Eq. 4: the largest
  wrong-class softmax probability of the PGD-attacked example) under the Section 3.1 PGD-AT model of
  the same seed (its last weights, attacked with its own training attack, seeded);
* two PGD-AT runs per seed train on D_typ + the **high** half and on D_typ + the **low** half
  (equal sizes: with an odd count the middle example joins neither), with the Section 3.2 runs'
  settings, and are evaluated on all of D'_typ;
* the claim's control part is the paired difference low minus high (per seed) of D'_typ clean and
  PGD-20 accuracy: > 0 with its 95% CI above 0 supports "the poisoning examples do the harm".

A second control asks whether D_atyp harms more than *any* extra data would: where the data set
leaves training images out of the estimate (``--per-class``), one more PGD-AT run per seed trains on
D_typ + a **random** draw of those unused images, class by class as many as D_atyp has (drawn with
the run's seed). C3-R is the paired difference of that run minus the Section 3.2 run at p = 100%
(D_typ + all of D_atyp): > 0 supports "atypical examples harm, not just more examples". Without
unused images (the whole training set estimated) the arm is not planned and C3-R is not decided.

Run folders ``RUN/sec32/controls/train/poison-{high,low}-pgd-seed<s>`` and ``random-pgd-seed<s>``;
the ids (and scores) of each arm are kept in ``RUN/sec32/controls/subsets/<run>.json``. This module
plans and reads; the task that trains is :class:`memadv.experiments.sec3.PoisoningControlTask`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from memadv.bat.runs import TrainingRun
from memadv.layout import RunLayout
from memadv.paper.sec3 import HALVES, RANDOM, control_label


@dataclass
class ControlRun:
    half: str  # the arm: "high", "low" or "random"
    seed: int
    final: pd.DataFrame  # final.parquet: the run's last (and selected) weights on all of D'_typ


def load_controls(run_dir: Path, seeds: list[int] | None = None) -> list[ControlRun]:
    """The finished control runs under ``RUN/sec32/controls/train`` (``seeds``: only those); the run's
    own ``config.json`` says its seed, the folder name its half."""
    base = RunLayout(run_dir).sec32_controls_train
    out = []
    for half in HALVES + (RANDOM,):
        for d in sorted(base.glob(control_label(half, 0)[:-1] + "*")) if base.is_dir() else []:
            run = TrainingRun(d)
            if not run.is_finished():
                continue
            seed = int(run.config()["train"]["seed"])
            if seeds is None or seed in set(seeds):
                out.append(ControlRun(half, seed, run.final()))
    return out


__all__ = ["ControlRun", "load_controls"]
