"""Datasets with canonical example ids, fingerprints, and the schemas of score and split files."""

from memadv.data.dataset import Dataset
from memadv.data.registry import DATASETS, load_dataset

__all__ = ["Dataset", "DATASETS", "load_dataset"]
