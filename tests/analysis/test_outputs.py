"""The output kit of analysis/ (outputs.py): the one Markdown section writer and the one image grid."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from memadv.analysis.outputs import frame_markdown, image_grid, markdown_section, pyplot, show_image, write_markdown


def test_markdown_section_layout_and_escaping(tmp_path):
    text = markdown_section("T", ["a", "b"], [["x|y", 1]], "note")
    assert text == "### T\n\n| a | b |\n|---|---|\n| x\\|y | 1 |\n\nnote\n"
    assert markdown_section("T", ["a"], []).endswith("|---|\n")  # no note: no trailing blank line
    path = write_markdown(tmp_path / "t.md", text)
    assert path.read_text() == text


def test_frame_markdown_formats_floats_and_nan():
    df = pd.DataFrame({"method": ["PGD-AT"], "acc": [12.345], "gap": [math.nan], "n": ["7"]})
    lines = frame_markdown(df, "T", fmt="{:.2f}").splitlines()
    assert lines[2] == "| method | acc | gap | n |" and lines[4] == "| PGD-AT | 12.35 | – | 7 |"


def test_image_grid_hides_empty_cells_and_shows_images_on_a_fixed_scale():
    fig, axes = image_grid(2, 3, (1.0, 1.5), 0.5)
    assert axes.shape == (2, 3) and not any(ax.axison for ax in axes.ravel())
    assert tuple(fig.get_size_inches()) == (3.0, 3.5)
    dark = torch.full((1, 4, 4), 10, dtype=torch.uint8)  # a dark image stays dark: no per-image stretch
    show_image(axes[0, 0], dark)
    show_image(axes[0, 1], np.zeros((3, 4, 4), np.uint8))
    im = axes[0, 0].images[0]
    assert axes[0, 0].axison and im.get_clim() == (0, 255) and not axes[0, 0].get_xticks().size
    assert axes[0, 1].images[0].get_array().shape == (4, 4, 3) and not axes[1, 0].axison
    pyplot().close(fig)
