"""The layout of a run folder: every path memadv writes or reads under ``RUN`` (``memadv estimate
--out RUN``, ``memadv pipeline --out RUN``), in one place, as submitit's ``JobPaths`` owns a job's
files. Code asks :class:`RunLayout` for a path instead of joining literals; a training run's own
files (``config.json``, ``metrics.parquet``, checkpoints) are :mod:`memadv.bat.runs`'s.

::

    RUN/estimate/spec.json, estimate/shards/, estimate/jobs/   the estimator (memadv.estimate)
    RUN/scores/mem.parquet, scores/infl.parquet ...            its scores (memadv.scores.schema)
    RUN/splits/splits.parquet, splits/summary.md               split files (memadv.splits.rules)
    RUN/sec31/train/<run>/, sec31/jobs/                        Section 3.1 training runs
    RUN/sec32/train/<run>/, sec32/subsets/, sec32/jobs/        Section 3.2 training runs
    RUN/sec32/controls/{train/<run>/,subsets/,jobs/}            C3's control runs
    RUN/lrgrid/{train/<run>/,jobs/,choice.json}                 the Table 2 methods' lr grid (--lr-grid)
    RUN/train/<run>/, train/.sweep/bat-table/                  the BAT table runs (Tables 2, 4)
    RUN/ablation/train/<run>/, ablation/jobs/                  the ablation grid (Fig. 5)
    RUN/report/{scores,sec31,sec32,ablation}/, report/report.{md,html}, report/claims.json
                                 (the figure/table stems other steps look for: REPORT_STEMS)
    RUN/pipeline/plan.json, pipeline/timing.json, pipeline/<stage>.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memadv.errors import SchemaError

# The report files that later steps look for (the pipeline's up-to-date check, `memadv status`, the
# report), spelled once: the figure and table functions of memadv.analysis write ``<stem>.png`` /
# ``.pdf`` / ``.csv`` / ``.md`` under these stems into the folder they are given.
MEM_HISTOGRAM = "mem_histogram"   # Fig. 7
FIG1 = "fig1_pgd_atypical"        # Figs. 1, 12-14
SEC31_TABLE = "sec31"             # Section 3.1's last-epoch table
FIG2 = "fig2_pgd_typical"         # Figs. 2, 18-20
FIG21 = "fig21_cosine"            # Fig. 21
TABLE1 = "table1"
FIG3 = "fig3_poisoning"           # Fig. 3
TABLE2 = "table2"
TABLE4 = "table4"
FIG4 = "fig4_curves"              # Fig. 4
FIG5 = "fig5_ablation"            # Fig. 5
REPORT_STEMS = (MEM_HISTOGRAM, FIG1, SEC31_TABLE, FIG2, FIG21, TABLE1, FIG3, TABLE2, TABLE4, FIG4, FIG5)

# The files of a score folder (RUN/scores, or any folder of scores a command is given) and of a
# splits folder, spelled once: their writers (memadv.scores.schema, memadv.splits.rules) and their
# readers take them from here.
MEM_FILE = "mem.parquet"
INFL_FILE = "infl.parquet"
TEST_ACC_FILE = "test_acc.parquet"
PROXIES_FILE = "proxies.parquet"          # free proxies of mem (memadv.estimate.proxies)
TEST_ACC_FULL_FILE = "test_acc_full.parquet"  # full-data ERM models (memadv.estimate.full_models)
FZ_FILENAMES_FILE = "filenames.parquet"   # import-fz: the released file's image names
SPLITS_FILE = "splits.parquet"
LABELS_FILE = "labels.parquet"            # three-way labels with error control (memadv.splits.labels)
SPLIT_SUMMARY_FILE = "summary.md"
# The parts of a run folder that ``locate`` recognises in a path given for the run.
_PARTS = ("scores", "splits", "report", "train", "estimate", "pipeline")


@dataclass(frozen=True)
class RunLayout:
    """The paths of the run folder ``root`` (nothing is created or checked)."""

    root: Path
    scores_dir: Path | None = None  # a score folder outside the run (``locate``); None: RUN/scores

    def __init__(self, root: str | Path, scores_dir: str | Path | None = None) -> None:
        object.__setattr__(self, "root", Path(root))
        object.__setattr__(self, "scores_dir", None if scores_dir is None else Path(scores_dir))

    # ---- estimate, scores, splits
    @property
    def estimate(self) -> Path:
        return self.root / "estimate"

    @property
    def spec(self) -> Path:
        return self.estimate / "spec.json"

    @property
    def looks(self) -> Path:
        """The plan and looks of ``memadv estimate --until-decided`` (memadv.estimate.until_decided)."""
        return self.estimate / "looks.json"

    @property
    def estimate_jobs(self) -> Path:
        return self.estimate / "jobs"

    @property
    def shards(self) -> Path:
        return self.estimate / "shards"

    def shard(self, shard: int) -> Path:
        """The parquet file of a finished shard (memadv.estimate.shards)."""
        return self.shards / f"shard-{shard:05d}.parquet"

    @property
    def checkpoints(self) -> Path:
        """Epoch checkpoints of shards in training (memadv.estimate.checkpoints)."""
        return self.estimate / "checkpoints"

    def shard_checkpoint(self, shard: int, part: str = "pt") -> Path:
        """``part``: ``pt`` (the state), ``progress.json`` (epochs done) or ``attempt.json`` (this attempt)."""
        return self.checkpoints / f"shard-{shard:05d}.{part}"

    @property
    def full_models(self) -> Path:
        """Blocks of the full-data ERM models (memadv.estimate.full_models) and their jobs/."""
        return self.estimate / "full"

    def full_block(self, block: int, size: int) -> Path:
        return self.full_models / f"full-{block:05d}-n{size}.parquet"

    @property
    def full_jobs(self) -> Path:
        return self.full_models / "jobs"

    def shard_lock(self, shard: int) -> Path:
        """The lock of a shard in training (memadv.estimate.shard_locks). The folder keeps its first
        name, ``claims/``, so a run started by an earlier memadv still sees its live locks."""
        return self.estimate / "claims" / f"shard-{shard:05d}.lock"

    @property
    def scores(self) -> Path:
        return self.scores_dir if self.scores_dir is not None else self.root / "scores"

    @property
    def mem(self) -> Path:
        return self.scores / MEM_FILE

    @property
    def infl(self) -> Path:
        return self.scores / INFL_FILE

    @property
    def test_acc(self) -> Path:
        return self.scores / TEST_ACC_FILE

    @property
    def proxies(self) -> Path:
        return self.scores / PROXIES_FILE

    @property
    def test_acc_full(self) -> Path:
        """The full-data ERM models' test correctness (``memadv.estimate.full_models``)."""
        return self.scores / TEST_ACC_FULL_FILE

    @property
    def splits(self) -> Path:
        return self.root / "splits"

    @property
    def data_cache(self) -> Path:
        """Decoded images of a user's own data set (memadv.data.own_images), one .npz per set of files."""
        return self.root / "data-cache"

    @property
    def example_paths(self) -> Path:
        """Each example's path relative to --data-root (a user's own data set): split, idx, path."""
        return self.data_cache / "paths.parquet"

    @property
    def split_file(self) -> Path:
        return self.splits / SPLITS_FILE

    @property
    def split_summary(self) -> Path:
        return self.splits / SPLIT_SUMMARY_FILE

    # ---- training runs (each a folder of memadv.bat.runs' files)
    @property
    def sec31_train(self) -> Path:
        return self.root / "sec31" / "train"

    @property
    def sec31_jobs(self) -> Path:
        return self.root / "sec31" / "jobs"

    @property
    def sec32(self) -> Path:
        return self.root / "sec32"

    @property
    def sec32_train(self) -> Path:
        return self.sec32 / "train"

    @property
    def sec32_subsets(self) -> Path:
        return self.sec32 / "subsets"

    @property
    def sec32_jobs(self) -> Path:
        return self.sec32 / "jobs"

    @property
    def sec32_controls(self) -> Path:
        """C3's poisoning control (memadv.analysis.poisoning_control): train/, subsets/, jobs/."""
        return self.sec32 / "controls"

    @property
    def sec32_controls_train(self) -> Path:
        return self.sec32_controls / "train"

    @property
    def sec32_controls_subsets(self) -> Path:
        return self.sec32_controls / "subsets"

    @property
    def sec32_controls_jobs(self) -> Path:
        return self.sec32_controls / "jobs"

    @property
    def table_train(self) -> Path:
        return self.root / "train"

    @property
    def table_jobs(self) -> Path:
        return sweep_jobs(self.table_train, "bat-table")

    @property
    def ablation_train(self) -> Path:
        return self.root / "ablation" / "train"

    @property
    def ablation_jobs(self) -> Path:
        return self.root / "ablation" / "jobs"

    @property
    def lr_grid(self) -> Path:
        """The Table 2 methods' learning-rate grid (pipeline --lr-grid): train/, jobs/, choice.json."""
        return self.root / "lrgrid"

    @property
    def lr_grid_train(self) -> Path:
        return self.lr_grid / "train"

    @property
    def lr_grid_jobs(self) -> Path:
        return self.lr_grid / "jobs"

    @property
    def lr_choice(self) -> Path:
        return self.lr_grid / "choice.json"

    def training_dirs(self) -> dict[str, Path]:
        """Pipeline stage -> the folder holding its training runs."""
        return {"sec31": self.sec31_train, "sec32": self.sec32_train,
                "sec32 controls": self.sec32_controls_train, "lr grid": self.lr_grid_train,
                "bat table": self.table_train, "ablation": self.ablation_train}

    # ---- report and pipeline bookkeeping
    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def report_scores(self) -> Path:
        return self.report / "scores"

    @property
    def report_sec31(self) -> Path:
        return self.report / "sec31"

    @property
    def report_sec32(self) -> Path:
        return self.report / "sec32"

    @property
    def report_ablation(self) -> Path:
        return self.report / "ablation"

    @property
    def report_html(self) -> Path:
        return self.report / "report.html"

    @property
    def report_md(self) -> Path:
        return self.report / "report.md"

    @property
    def claims_json(self) -> Path:
        """The verdict of every paper claim (memadv.analysis.paper_claims)."""
        return self.report / "claims.json"

    @property
    def pipeline(self) -> Path:
        return self.root / "pipeline"

    @property
    def plan(self) -> Path:
        return self.pipeline / "plan.json"

    @property
    def timing(self) -> Path:
        return self.pipeline / "timing.json"

    def stage_reports(self) -> dict[str, list[Path]]:
        """Pipeline stage -> the report files it writes that mark it done."""
        return {"score figures": [self.report_scores / f"{MEM_HISTOGRAM}.png"],
                "sec31": [self.report_sec31 / f"{FIG1}.png", self.report_sec31 / f"{SEC31_TABLE}.csv"],
                "sec32": [self.report_sec32 / f"{FIG2}.png", self.report_sec32 / f"{FIG21}.png",
                          self.report_sec32 / f"{TABLE1}.csv", self.report_sec32 / f"{FIG3}.png"],
                "bat table": [self.report / f"{TABLE2}.csv", self.report / f"{FIG4}.png"],
                "ablation": [self.report_ablation / f"{FIG5}.png"]}

    def stage_stamp(self, stage: str) -> Path:
        """The settings a pipeline stage last ran with."""
        return self.pipeline / f"{stage.replace(' ', '_')}.json"


def locate(path: str | Path) -> RunLayout:
    """The run that ``path`` names: the run folder itself, or one of its parts (``RUN/scores``,
    ``RUN/splits``, ``RUN/splits/splits.parquet``, ``RUN/train``, ``RUN/report``), the one answer to
    "was I given RUN or RUN/scores?". A score folder with any name (it holds ``mem.parquet``) is
    kept as the layout's ``scores``, its parent as the run."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    if (p / MEM_FILE).is_file():
        return RunLayout(p.parent, scores_dir=p)
    if p.name in _PARTS and not (p / "scores").is_dir() and not (p / "estimate").is_dir():
        return RunLayout(p.parent)
    return RunLayout(p)


def sweep_jobs(train_dir: str | Path, name: str) -> Path:
    """The executor folder (jobs, logs) of the sweep ``name`` whose runs go to ``train_dir``; hidden,
    so that ``find_training_runs`` skips it."""
    return Path(train_dir) / ".sweep" / name


def require_run_dir(path: Path) -> None:
    """Refuse a run folder that is missing or is not a folder, saying which (SchemaError)."""
    if not path.exists():
        raise SchemaError(f"run directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise SchemaError(f"run directory {str(path)!r} is not a folder (it is a file)")
