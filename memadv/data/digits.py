"""scikit-learn's digits (1,797 8x8 grey images, 10 classes): the embedded default data set.

Split: a fixed stratified 80/20 train/test split (``sklearn.model_selection.train_test_split``
with ``test_size=0.2, stratify=labels, random_state=0``) -> 1,437 train, 360 test. Within each
split, examples keep the order of ``sklearn.datasets.load_digits``, so ids are stable.
Pixels (0..16) are scaled to uint8 0..255 (``round(v * 255 / 16)``).
"""

from __future__ import annotations

import numpy as np
import torch

from memadv.data.dataset import Dataset, channel_stats

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digits() -> Dataset:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    raw = sk_load_digits()
    images = np.rint(raw.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = raw.target.astype(np.int64)
    train_ids, test_ids = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION,
                                           stratify=labels, random_state=SPLIT_SEED)
    train_ids, test_ids = np.sort(train_ids), np.sort(test_ids)
    x_train = torch.from_numpy(images[train_ids])
    mean, std = channel_stats(x_train)
    return Dataset(name="digits", x_train=x_train, y_train=torch.from_numpy(labels[train_ids]),
                   x_test=torch.from_numpy(images[test_ids]), y_test=torch.from_numpy(labels[test_ids]),
                   num_classes=10, mean=mean, std=std, class_names=[str(d) for d in range(10)])
