"""Data: readers for raw interaction logs, preparation into Arrow datasets, batches."""

from glintru.data.dataset import DatasetError, PreparedDataset, load_dataset, write_prepared

__all__ = ["PreparedDataset", "DatasetError", "load_dataset", "write_prepared"]
