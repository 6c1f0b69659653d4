"""The paper's split thresholds, in one place (every default that means "the paper's threshold"
reads them from here, so a reader finds each number and its source once).

Units: memorization and influence are differences of two probabilities (Eqs. 1-2), in [-1, 1];
the ERM accuracy is a probability.
"""

from __future__ import annotations

#: a training example is atypical when mem > this (paper Sec. 3.1); also BAT's sigma (Sec. 4, Eq. 4)
MEM_ATYPICAL = 0.15
#: a training example is typical when mem < this (paper Sec. 3.2)
MEM_TYPICAL = 0.02
#: a test example is atypical when infl(i, j) > this for some atypical training example i (Sec. 3.1)
INFL_ATYPICAL = 0.15
#: a test example is not typical when infl(i, j) > this for some atypical training example i (Sec. 3.2)
INFL_TYPICAL = 0.02
#: a test example is not typical when the ERM models answer it correctly less often than this (Sec. 3.2)
MIN_TEST_ACC = 0.8
