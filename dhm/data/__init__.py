"""Datasets in Ultralight's folder layout, preprocessing, samples and the built-in set."""

from dhm.data.dataset import Dataset, open_dataset
from dhm.data.samples import Sample, SampleBuilder
from dhm.data.split import Split, split_frames

__all__ = ["Dataset", "Sample", "SampleBuilder", "Split", "open_dataset", "split_frames"]
