"""`memadv train --scores RUN` on a user's own data takes everything about the data from the
estimate (where it lies and how it was loaded, e.g. ``--image-size`` for images of mixed sizes), and
refuses up front what the data set cannot support (AutoAttack on fewer than 4 classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from own_data_files import CLASSES
from PIL import Image

from memadv.cli.main import main
from memadv.data import own_images

FAST = ["--net", "mlp", "--models", "4", "--models-per-shard", "4", "--epochs", "2", "--batch-size", "16",
        "--full-models", "2", "--no-progress"]
TRAIN = ["--net", "mlp", "--epochs", "1", "--batch-size", "16", "--progress", "false"]


def _mixed_size_tree(root: Path) -> Path:
    """An ImageFolder tree of 3 classes whose images are 8x8 and 10x12 pixels (brightness = class)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 4)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for k in range(n):
                shape = (8, 8) if k % 2 else (10, 12)
                img = np.clip(c * 90 + rng.integers(0, 60, shape), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / name / f"{k:03d}.png")
    return root


def test_train_from_scores_takes_data_root_and_image_size_of_the_estimate(tmp_path, capsys):
    own_images._MEMO.clear()
    data = _mixed_size_tree(tmp_path / "data")
    run = tmp_path / "run"
    # mixed sizes load only with --image-size, which the estimate records
    assert main(["estimate", "--dataset", "imagefolder", "--data-root", str(data), *FAST, "--out", str(run)]) == 2
    assert "--image-size" in capsys.readouterr().err
    assert main(["estimate", "--dataset", "imagefolder", "--data-root", str(data), "--image-size", "8", "8",
                 *FAST, "--out", str(run)]) == 0
    own_images._MEMO.clear()  # a later process: nothing decoded in memory
    out = tmp_path / "train"
    # neither --data-root nor --image-size: both come from the scores
    assert main(["train", "--method", "bat", "--dataset", "imagefolder", "--scores", str(run), *TRAIN,
                 "--final-attacks", "clean", "--out", str(out)]) == 0, capsys.readouterr().err
    (final,) = out.glob("*/final.parquet")
    assert final.parent.name.startswith("bat-")
    # an option that differs from the scores' is refused in one line
    assert main(["train", "--method", "bat", "--dataset", "imagefolder", "--scores", str(run), *TRAIN,
                 "--image-size", "10", "10", "--final-attacks", "clean", "--out", str(tmp_path / "other")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("memadv: error:")]
    assert len(errors) == 1 and "--image-size" in errors[0] and not (tmp_path / "other").exists()


def test_autoattack_on_fewer_than_4_classes_is_refused_before_training(tmp_path, capsys):
    own_images._MEMO.clear()
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 6)
    x = np.clip(y[:, None, None] * 90 + rng.integers(0, 60, (y.size, 8, 8)), 0, 255).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    out = tmp_path / "train"
    code = main(["train", "--method", "pgd", "--dataset", "arrays", "--data-root", str(tmp_path / "d.npz"),
                 *TRAIN, "--final-attacks", "clean", "aa", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("memadv: error:") and "at least 4 classes" in err[-1]
    assert "leave aa out" in err[-1] and not out.exists()
