"""Fig. 3 of the paper: poisoning atypical examples beside typical examples of the class they are pushed toward.

Under the Section 3.1 PGD-AT model (``RUN/sec31/train/pgd-seed<s>``), every atypical training example
x (D_atyp) is attacked with the run's training attack (PGD, its eps / step size / steps, seeded) and
gets the poisoning score of Eq. 4, q(x_adv) = max_{t != y} softmax(F(x_adv))_t, and the wrong class t
that attains it. Examples with q > ``threshold`` (0.8 as in the paper) are shown, highest first, each
beside the typical training examples (D_typ) of class t nearest to it in penultimate representation.

Which weights: the last epoch and the best-adversarial epoch are both scored and the one with more
examples above the threshold is shown (the paper computes the score during training, when few
atypical examples are fitted yet; a model at its last epoch has fitted many of them). When no example
passes the threshold, the highest-scoring ones are shown and the title says so.

Outputs (beside the Section 3.2 figures): ``fig3_poisoning.png/.pdf`` and ``poisoning.csv`` (every
atypical training example: idx, label, q, target class, checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from memadv.analysis.outputs import image_grid, pyplot, save_figure, show_image, write_csv
from memadv.bat.objective_config import ObjectiveConfig
from memadv.bat.runs import TrainingRun
from memadv.bat.selection import CHECKPOINT_FILES
from memadv.errors import MemadvError
from memadv.layout import FIG3, RunLayout

THRESHOLD = 0.8


def find_pgd_run(run_dir: Path) -> Path | None:
    """The Section 3.1 PGD-AT run with the lowest-sorting name that has ``last.pt``; None without one."""
    base = RunLayout(run_dir).sec31_train
    cands = [d for d in sorted(base.glob("pgd-seed*")) if TrainingRun(d).has_checkpoint()] if base.is_dir() else []
    return cands[0] if cands else None


def poisoning_scores(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, ocfg: ObjectiveConfig,
                     seed: int = 0, device: str | torch.device = "cpu",
                     batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(q, t), float (N,) and int64 (N,): Eq. 4's poisoning score of each example of ``images`` (uint8
    (N, C, H, W)) attacked by PGD with ``ocfg``'s eps / step size / steps, and the wrong class attaining it."""
    from memadv.bat import attacks, losses
    gen = torch.Generator().manual_seed(int(seed))
    qs, ts = [], []
    model.eval()
    for s in range(0, images.shape[0], batch_size):
        x = images[s:s + batch_size].to(device).float().div_(255.0)
        y = labels[s:s + batch_size].to(device)
        x_adv = attacks.pgd(model, x, y, ocfg.eps, ocfg.step_size, ocfg.steps, random_start=True, generator=gen)
        with torch.no_grad():
            logits = model(x_adv)
        q = losses.poisoning_score(logits, y)  # Eq. 4, as BAT's training loss computes it
        # the wrong class attaining q (first one on a tie, as torch.max picks)
        t = torch.softmax(logits, dim=1).scatter(1, y[:, None], -1.0).argmax(dim=1)
        qs.append(q.cpu().numpy())
        ts.append(t.cpu().numpy())
    if not qs:
        return np.zeros(0), np.zeros(0, np.int64)
    return np.concatenate(qs).astype(float), np.concatenate(ts).astype(np.int64)


def poisoning_figure(run_dir: Path, out: Path, threshold: float = THRESHOLD, n_show: int = 6,
                     n_neighbours: int = 4) -> list[Path]:
    from memadv.bat.runs import TrainingRun
    from memadv.data.registry import DATASET_OPTION_NAMES, load_dataset
    from memadv.splits.files import read_split_sets
    from memadv.bat.evaluate import representations

    run_dir = Path(run_dir)
    run = find_pgd_run(run_dir)
    if run is None:
        raise MemadvError(f"Fig. 3 needs the Section 3.1 PGD-AT run under {RunLayout(run_dir).sec31_train}; "
                          f"run the pipeline")
    pgd = TrainingRun(run)
    conf = pgd.config()
    train_conf = conf["train"]
    ds = load_dataset(train_conf["dataset"], train_conf.get("data_root"), cache_dir=RunLayout(run_dir).data_cache,
                      **{k: train_conf[k] for k in DATASET_OPTION_NAMES if train_conf.get(k) is not None})
    sets = read_split_sets(RunLayout(run_dir).split_file, ds)
    atyp, typ = sets["train/atypical"], sets["train/typical"]
    ocfg = pgd.objective_config()
    seed = int(conf["train"]["seed"])
    best: tuple[int, str, int, np.ndarray, np.ndarray, torch.nn.Module] | None = None
    for ck in ("last", "best_adv"):
        file = CHECKPOINT_FILES[ck]
        if not pgd.has_checkpoint(file):
            continue
        model, epoch = pgd.load_model(ds, file)
        ids = torch.from_numpy(atyp)
        q, t = poisoning_scores(model, ds.x_train[ids], ds.y_train[ids], ocfg, seed)
        n_above = int((q > threshold).sum())
        if best is None or n_above > best[0]:
            best = (n_above, ck, epoch, q, t, model)
    if best is None:
        raise MemadvError(f"{run} has no checkpoint (last.pt / best_adv.pt)")
    n_above, ck_name, epoch, q, t, model = best
    table = pd.DataFrame({"idx": atyp, "label": ds.y_train[torch.from_numpy(atyp)].numpy() if atyp.size else [],
                          "q": q, "target": t, "checkpoint": ck_name, "epoch": epoch})
    table = table.sort_values("q", ascending=False).reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_csv(out / "poisoning.csv", table)]

    shown = table[table["q"] > threshold].head(n_show)
    note = f"{n_above} of {len(table)} atypical examples have q > {threshold:g}"
    if shown.empty:
        shown = table.head(n_show)
        note += "; none pass, the highest-scoring are shown"
    fig, axes = image_grid(max(len(shown), 1), 1 + n_neighbours, (1.5, 1.6), 0.6)
    typ_t = torch.from_numpy(typ)
    h_typ = representations(model, ds.x_train[typ_t]) if typ.size else torch.zeros(0, 1)
    names = ds.class_names
    for r, (_, row) in enumerate(shown.iterrows()):
        i, target = int(row["idx"]), int(row["target"])
        img = ds.x_train[i]
        show_image(axes[r, 0], img)
        axes[r, 0].set_title(f"atypical '{names[int(row['label'])]}'\nq={row['q']:.2f}", fontsize=7)
        cand = np.flatnonzero(ds.y_train[typ_t].numpy() == target) if typ.size else np.zeros(0, np.int64)
        if cand.size:
            h = representations(model, img[None])
            hn = torch.nn.functional.normalize(h, dim=1)
            cn = torch.nn.functional.normalize(h_typ[torch.from_numpy(cand)], dim=1)
            order = cand[torch.argsort(-(cn @ hn.T).squeeze(1)).numpy()][:n_neighbours]
            for k, j in enumerate(order):
                show_image(axes[r, 1 + k], ds.x_train[int(typ[j])])
                axes[r, 1 + k].set_title(f"typical '{names[target]}'", fontsize=7)
    fig.suptitle(f"Fig. 3: poisoning atypical examples (PGD-AT, {ck_name} epoch {epoch}; {note})", fontsize=8)
    fig.tight_layout()
    paths += save_figure(fig, out / FIG3, {"figure": FIG3, "checkpoint": ck_name,
                                                       "n_above": n_above, "n_atypical": int(len(table)),
                                                       "rows": int(len(shown))})
    pyplot().close(fig)
    return paths


__all__ = ["poisoning_scores", "poisoning_figure", "find_pgd_run", "THRESHOLD"]
