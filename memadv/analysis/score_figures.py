"""``memadv figures scores RUN``: the score figures of the paper's Appendix A.

* Fig. 7 ``mem_histogram``: histogram of the training examples' memorization values.
* Fig. 6 ``mem_examples_class{K}``: training images of one class with memorization near 0, 0.5 and 1.
* Fig. 8 ``high_infl_pairs``: (train, test) pairs of one class with high influence, with their scores.

Each figure is written as PNG and PDF (atomically) to ``RUN/report/scores/`` (or ``--out``) and
titled with the run it came from. Images come from ``load_dataset(meta["dataset"], data_root=...)``
and are checked against the scores' fingerprints; ``--no-images`` makes only the histogram.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from memadv.analysis.figure_configs import ScoreFiguresConfig
from memadv.analysis.outputs import image_grid, pyplot, save_figure, show_image
from memadv.data.dataset import Dataset
from memadv.data.registry import load_dataset, options_from_meta
from memadv.scores.schema import Scores, check_fingerprint, read_scores
from memadv.splits.rules import SplitConfig
from memadv.splits.files import read_splits
from memadv.errors import ConfigError, DatasetError, MemadvError, SchemaError
from memadv.layout import MEM_HISTOGRAM, RunLayout, locate
from memadv.paper_thresholds import INFL_ATYPICAL, MEM_ATYPICAL

MEM_TARGETS = (0.0, 0.5, 1.0)


def run_name(run_dir: Path) -> str:
    p = Path(run_dir).resolve()
    return p.parent.name if p.name == "scores" else p.name


def _subtitle(scores: Scores, run: str) -> str:
    m = scores.meta
    n = m.get("n_models")
    models = f"{n} models" if isinstance(n, int) and n > 0 else "models unknown"
    extra = "" if m.get("complete", True) else ", UNFINISHED estimate"
    return f"run: {run} ({m.get('dataset')}, {models}, source {m.get('source', 'memadv')}{extra})"


def _save(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    paths = save_figure(fig, out_dir / stem)
    pyplot().close(fig)
    return paths


def _thresholds(run_dir: Path) -> tuple[float, float]:
    """mem thresholds of the run's split file when there is one, else the paper's."""
    cfg = SplitConfig()
    try:
        th = read_splits(run_dir)[1].get("thresholds", {})
        return float(th.get("mem_typical", cfg.mem_typical)), float(th.get("mem_atypical", cfg.mem_atypical))
    except MemadvError:
        return cfg.mem_typical, cfg.mem_atypical


def histogram(scores: Scores, run_dir: Path, out_dir: Path, bins: int) -> list[Path]:
    mem = scores.mem["mem"].to_numpy(np.float64)
    mem = mem[np.isfinite(mem)]
    if mem.size == 0:
        raise SchemaError("no finite memorization values to plot")
    typ, atyp = _thresholds(run_dir)
    lo, hi = min(0.0, float(mem.min())), max(1.0, float(mem.max()))
    fig, ax = pyplot().subplots(figsize=(6, 4))
    ax.hist(mem, bins=np.linspace(lo, hi, bins + 1), color="tab:blue")
    ax.axvline(typ, color="tab:green", ls="--", label=f"typical: mem < {typ:g} ({(mem < typ).mean():.1%})")
    ax.axvline(atyp, color="tab:red", ls="--", label=f"atypical: mem > {atyp:g} ({(mem > atyp).mean():.1%})")
    ax.set_xlabel("memorization value")
    ax.set_ylabel("number of training examples")
    ax.legend(fontsize=8)
    ax.set_title(f"Memorization values of {mem.size} training examples (Fig. 7)\n"
                 f"{_subtitle(scores, run_name(run_dir))}", fontsize=9)
    return _save(fig, out_dir, MEM_HISTOGRAM)


def _pick_class(scores: Scores, ds: Dataset, wanted: str | None) -> int:
    if wanted is not None:
        if wanted in ds.class_names:
            return ds.class_names.index(wanted)
        try:
            k = int(wanted)
        except ValueError:
            raise ConfigError(f"--class {wanted!r} is neither a label number nor a class name of {ds.name!r}") from None
        if not 0 <= k < ds.num_classes:
            raise ConfigError(f"--class must be in [0, {ds.num_classes}), got {k}")
        return k
    mem = scores.mem
    best, best_cost = 0, math.inf
    for k, part in mem[np.isfinite(mem["mem"])].groupby("label"):
        v = part["mem"].to_numpy(np.float64)
        cost = sum(float(np.abs(v - t).min()) for t in MEM_TARGETS)
        if cost < best_cost - 1e-12:
            best, best_cost = int(k), cost
    return best


def _image(ds: Dataset, split: str, example_id: int) -> np.ndarray:
    """The uint8 (C, H, W) image of canonical id ``example_id`` (its position differs in a reduced copy)."""
    return ds.images(split)[int(ds.positions(split, np.array([example_id]))[0])].numpy()


def example_grid(scores: Scores, ds: Dataset, run_dir: Path, out_dir: Path, wanted: str | None,
                 per_level: int) -> list[Path]:
    k = _pick_class(scores, ds, wanted)
    part = scores.mem[(scores.mem["label"] == k) & np.isfinite(scores.mem["mem"])]
    ids = part["idx"].to_numpy(np.int64)
    vals = part["mem"].to_numpy(np.float64)
    fig, axes = image_grid(len(MEM_TARGETS), per_level, (1.3, 1.5), 0.8)
    for r, t in enumerate(MEM_TARGETS):
        order = np.argsort(np.abs(vals - t), kind="stable")[:per_level]
        for c in range(min(per_level, order.size)):
            show_image(axes[r, c], _image(ds, "train", int(ids[order[c]])))
            axes[r, c].set_title(f"#{ids[order[c]]}\nmem {vals[order[c]]:.2f}", fontsize=6)
        axes[r, 0].set_ylabel(f"mem ≈ {t:.1f}", fontsize=8)
    name = ds.class_names[k] if k < len(ds.class_names) else str(k)
    fig.suptitle(f"Class {k} ({name}): training images near mem 0, 0.5, 1 (Fig. 6)\n"
                 f"{_subtitle(scores, run_name(run_dir))}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir, f"mem_examples_class{k}")


def pair_grid(scores: Scores, ds: Dataset, run_dir: Path, out_dir: Path, n_pairs: int, min_infl: float,
              min_mem: float) -> list[Path]:
    infl = scores.infl
    mem_of = dict(zip(scores.mem["idx"].to_numpy(np.int64).tolist(), scores.mem["mem"].to_numpy(np.float64).tolist()))
    same = infl[(infl["train_label"] == infl["test_label"]) & (infl["infl"] > min_infl)].copy()
    same["mem"] = same["train_idx"].map(mem_of)
    same = same[same["mem"] > min_mem].sort_values(["infl", "train_idx", "test_idx"], ascending=[False, True, True])
    pairs = same.head(n_pairs)
    per_row = 4
    rows = max(1, math.ceil(len(pairs) / per_row))
    fig, axes = image_grid(rows, 2 * per_row, (1.4, 1.7), 0.9)
    for n, (_, p) in enumerate(pairs.iterrows()):
        r, c = divmod(n, per_row)
        tr, te = int(p["train_idx"]), int(p["test_idx"])
        for j, (img, text) in enumerate(((_image(ds, "train", tr), f"train #{tr}\nmem {p['mem']:.2f}"),
                                         (_image(ds, "test", te), f"test #{te}\ninfl {p['infl']:.2f}"))):
            show_image(axes[r, 2 * c + j], img)
            axes[r, 2 * c + j].set_title(text, fontsize=6)
    if pairs.empty:
        axes[0, 0].text(0, 0.5, f"no same-class pair with infl > {min_infl:g} and train mem > {min_mem:g}",
                        fontsize=9, transform=axes[0, 0].transAxes)
    fig.suptitle(f"High-influence pairs (same class, infl > {min_infl:g}, train mem > {min_mem:g}; Fig. 8): "
                 f"{len(pairs)} of {len(same)}\n{_subtitle(scores, run_name(run_dir))}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir, "high_infl_pairs")


def make_figures(run_dir: Path, cfg: ScoreFiguresConfig) -> list[Path]:
    """``memadv figures scores RUN``: :func:`score_figures` with the command's options."""
    return score_figures(run_dir, out=None if cfg.out is None else Path(cfg.out), data_root=cfg.data_root,
                         class_=cfg.grid_class, per_level=cfg.per_level, n_pairs=cfg.n_pairs, min_infl=cfg.min_infl,
                         min_mem=cfg.min_mem, bins=cfg.bins, images=cfg.images)


def score_figures(run_dir: Path, *, out: Path | None = None, data_root: str | Path | None = None,
                  class_: str | None = None, per_level: int = 8, n_pairs: int = 12, min_infl: float = INFL_ATYPICAL,
                  min_mem: float = MEM_ATYPICAL, bins: int = 50, images: bool = True) -> list[Path]:
    """Fig. 7 (histogram of ``bins`` bins) and, with ``images``, Fig. 6 (``per_level`` examples per
    memorization level of class ``class_``) and Fig. 8 (``n_pairs`` pairs with infl > ``min_infl``
    and mem > ``min_mem``) of the scores in ``run_dir`` (a run or its scores/ folder), written to
    ``out`` (default RUN/report/scores). Raises ConfigError / SchemaError on bad options or scores
    that do not fit the data set."""
    run_dir = Path(run_dir)
    given = {"per_level": per_level, "n_pairs": n_pairs, "bins": bins}
    for name, lo in (("per_level", 1), ("n_pairs", 1), ("bins", 1)):
        if given[name] < lo:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {lo}, got {given[name]}")
    scores = read_scores(run_dir)
    base = run_dir.resolve().parent if run_dir.resolve().name == "scores" else run_dir
    out_dir = out if out is not None else RunLayout(base).report_scores
    ds = None
    if images:
        # the data-set options (--classes, --per-class, ...) and root the scores were made with travel here
        spec = scores.meta.get("spec") if isinstance(scores.meta.get("spec"), dict) else {}
        root = data_root if data_root is not None else spec.get("data_root")
        ds = load_dataset(scores.meta["dataset"], data_root=root, cache_dir=RunLayout(base).data_cache,
                          **options_from_meta(scores.meta))
        check_fingerprint(scores.meta, ds, what=str(locate(run_dir).scores))
        # score files speak canonical ids; a reduced copy (--per-class) holds them at other positions
        try:
            for col, split in ((scores.mem["idx"], "train"), (scores.infl["train_idx"], "train"),
                               (scores.infl["test_idx"], "test")):
                ds.positions(split, col.to_numpy(np.int64))
        except DatasetError as e:
            raise SchemaError(f"{e}; the scores were made for another copy of the dataset") from None
        if (scores.mem["label"] < 0).any() or (scores.infl["train_label"] < 0).any():
            # imported pairs files carry no labels: take them from the dataset
            ytr, yte = ds.y_train.numpy(), ds.y_test.numpy()
            scores.mem["label"] = ytr[ds.positions("train", scores.mem["idx"].to_numpy(np.int64))]
            scores.infl["train_label"] = ytr[ds.positions("train", scores.infl["train_idx"].to_numpy(np.int64))]
            scores.infl["test_label"] = yte[ds.positions("test", scores.infl["test_idx"].to_numpy(np.int64))]
        if class_ is not None:
            _pick_class(scores, ds, class_)  # validate before writing anything
    paths = histogram(scores, base, out_dir, bins)
    if ds is not None:
        paths += example_grid(scores, ds, base, out_dir, class_, per_level)
        paths += pair_grid(scores, ds, base, out_dir, n_pairs, min_infl, min_mem)
    return paths
