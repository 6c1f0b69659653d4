"""How every figure and table file of ``analysis/`` is written: atomically, PNG + PDF for figures
(the PNG carrying its panel titles and size as JSON text metadata, key ``memadv``, so tests and
readers can check what a figure shows), CSV and Markdown for tables (one section layout:
``### title``, the table, a note), and how a grid of data-set images is drawn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from memadv.files.atomic import atomic_path, write_text_atomic
from memadv.files.tables import markdown_table


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


def write_markdown(path: Path, text: str) -> Path:
    """``text`` to ``path``, atomically; returns ``path``."""
    write_text_atomic(path, text)
    return path


def markdown_section(title: str, header: Sequence[Any], rows: Iterable[Sequence[Any]], note: str = "") -> str:
    """``### title``, a blank line, the table (:func:`memadv.files.tables.markdown_table`, cells
    escaped) and, if given, a blank line and ``note``; ends with a newline. Raises ValueError for a
    row of another length than ``header``."""
    lines = [f"### {title}", ""] + markdown_table(header, rows)
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def frame_markdown(df: pd.DataFrame, title: str, note: str = "", fmt: str = "{:.1f}") -> str:
    """:func:`markdown_section` of every column of ``df``: floats formatted with ``fmt``, NaN as an
    en dash, anything else as ``str``."""
    rows = []
    for _, r in df.iterrows():
        cells = []
        for v in r:
            if isinstance(v, (float, np.floating)):
                cells.append("–" if np.isnan(v) else fmt.format(float(v)))
            else:
                cells.append(str(v))
        rows.append(cells)
    return markdown_section(title, list(df.columns), rows, note)


def image_grid(rows: int, cols: int, cell: tuple[float, float], extra_height: float) -> tuple[Any, np.ndarray]:
    """(figure, axes (rows, cols)) for a grid of images, ``cell`` inches (width, height) per image
    plus ``extra_height`` inches for the titles; every axis starts hidden, :func:`show_image` shows it."""
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows + extra_height), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    return fig, axes


def show_image(ax: Any, img: np.ndarray | torch.Tensor) -> None:
    """Draw one data-set image, uint8 (C, H, W) with values 0-255: gray scale over the fixed 0-255
    range for one channel (so images of one grid compare), RGB from the first three channels
    otherwise; the axis frame is shown (a row label can go beside it), its ticks are not."""
    a = img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    ax.axis("on")
    if a.shape[0] == 1:
        ax.imshow(a[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(np.transpose(a[:3], (1, 2, 0)), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
