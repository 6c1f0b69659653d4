"""The options of ``memadv figures KIND`` (one config per kind, TOML table ``[figures-KIND]``), kept
apart from the drawing code so that reading a ``--config`` file imports no plotting library."""

from __future__ import annotations

from dataclasses import dataclass

from memadv.config import option
from memadv.paper_thresholds import INFL_ATYPICAL, MEM_ATYPICAL

# --select of the BAT table and the ablation grid -> the checkpoint rule of memadv.bat.selection
SELECT = {"own": "own", "last": "last", "best-adv": "best_adv", "best-clean": "best_clean"}


@dataclass
class ScoreFiguresConfig:
    """``memadv figures scores``: Figs. 6-8."""

    data_root: str | None = option(None, "folder holding the dataset's files (not needed for digits and "
                                         "synthetic-longtail)")
    out: str | None = option(None, "output folder (default: RUN/report/scores)")
    grid_class: str | None = option(None, "class of the example grid (Fig. 6), as a label number or class name "
                                          "(TOML: grid_class = \"3\"; default: the class whose examples come "
                                          "closest to mem 0, 0.5 and 1)", flag="--class")
    per_level: int = option(8, "images per memorization level in the example grid", unit="images", minimum=1)
    n_pairs: int = option(12, "high-influence pairs to show", unit="pairs", minimum=0)
    min_infl: float = option(INFL_ATYPICAL, "pairs need infl above this", source="paper Fig. 8")
    min_mem: float = option(MEM_ATYPICAL, "the pair's training example needs mem above this", source="paper Fig. 8")
    bins: int = option(50, "histogram bins", minimum=1)
    images: bool = option(True, "only the histogram, no example grids (for scores of datasets that cannot be "
                                "loaded here)", switch=True, flag="--no-images")


@dataclass
class BatFiguresConfig:
    """``memadv figures bat``: Tables 2 and 4, Fig. 4."""

    out: str | None = option(None, "output folder (default: report/ beside the train/ folder)")
    select: str = option("own", "own: each method's checkpoint rule from its paper/reference code "
                                "(memadv.bat.selection) plus its last epoch; last / best-adv / best-clean: that "
                                "checkpoint (and the last) for every method but PGD-AT, which keeps the paper's rows",
                         choices=tuple(SELECT))


@dataclass
class AblationFiguresConfig:
    """``memadv figures ablation``: Fig. 5."""

    out: str | None = option(None, "output folder (default: report/ beside the train/ folder)")
    select: str = option("last", "checkpoint whose accuracy each cell shows (the paper trains BAT to the last "
                                 "epoch)", choices=tuple(k for k in SELECT if k != "own"))


@dataclass
class Sec31FiguresConfig:
    """``memadv figures sec31``: Section 3.1's figures and table."""

    out: str | None = option(None, "output folder (default: RUN/report/sec31)")
    seeds: list[int] | None = option(None, "seeds of the runs to average (default: every seed present)")


@dataclass
class Sec32FiguresConfig:
    """``memadv figures sec32``: Section 3.2's figures, Table 1 and Fig. 3."""

    out: str | None = option(None, "output folder (default: RUN/report/sec32)")
    seeds: list[int] | None = option(None, "seeds of the runs to average (default: every seed present)")
    fig3: bool = option(True, "skip Fig. 3 (poisoning atypical examples; needs the Section 3.1 PGD-AT run)",
                        switch=True, flag="--no-fig3")


@dataclass
class ReportConfig:
    """``memadv figures report``: the report has no options beyond the run."""


# kind of `memadv figures` -> its options
FIGURE_CONFIGS: dict[str, type] = {"scores": ScoreFiguresConfig, "bat": BatFiguresConfig,
                                   "ablation": AblationFiguresConfig, "sec31": Sec31FiguresConfig,
                                   "sec32": Sec32FiguresConfig, "report": ReportConfig}


def figure_tables() -> dict[str, tuple[type, ...]]:
    """The TOML tables of ``memadv figures``: ``figures-<kind>``."""
    return {f"figures-{kind}": (cls,) for kind, cls in FIGURE_CONFIGS.items()}
