"""Table 2 of the paper as data: the runs of the BAT table (method and objective options; every run
is trained once per --train-seeds seed by the pipeline)."""

from __future__ import annotations

from typing import Any

# paper Table 2's rows: the baselines with their reference settings, BAT at the paper's alpha 1 and 2
TABLE_RUNS: list[dict[str, Any]] = [{"method": "pgd"}, {"method": "trades"}, {"method": "mart"},
                                    {"method": "gairat"}, {"method": "bat", "alpha": 1.0, "beta": 0.2},
                                    {"method": "bat", "alpha": 2.0, "beta": 0.2}]
