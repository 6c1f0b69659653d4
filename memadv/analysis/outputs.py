"""How every figure and table file of ``analysis/`` is written: atomically, PNG + PDF for figures
(the PNG carrying its panel titles and size as JSON text metadata, key ``memadv``, so tests and
readers can check what a figure shows), CSV for tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from memadv.data.atomic import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig: Any, base: Path, info: dict[str, Any] | None = None, dpi: int = 150) -> list[Path]:
    """``base``.png and ``base``.pdf; the PNG's metadata holds ``info``, the panel titles and the size."""
    meta = {"panels": [ax.get_title() for ax in fig.axes if ax.get_visible()],
            "n_axes": len(fig.axes), "size_in": [float(v) for v in fig.get_size_inches()], **(info or {})}
    paths = []
    for ext in ("png", "pdf"):
        path = base.with_suffix(f".{ext}")
        with atomic_path(path) as tmp:
            kwargs: dict[str, Any] = {"format": ext, "dpi": dpi, "bbox_inches": "tight"}
            if ext == "png":
                kwargs["metadata"] = {"memadv": json.dumps(meta)}
            fig.savefig(tmp, **kwargs)
        paths.append(path)
    return paths


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path
