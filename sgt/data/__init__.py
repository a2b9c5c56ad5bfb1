"""DataModules: one per dataset family, sharing the in-memory tensor machinery."""

from sgt.data.errors import DatasetCorruptError, DatasetNotFoundError, SGTError
from sgt.data.in_memory import InMemoryDataModule
from sgt.data.mnist import MNISTDataModule
from sgt.data.tensor_loader import TensorLoader

__all__ = [
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "InMemoryDataModule",
    "MNISTDataModule",
    "SGTError",
    "TensorLoader",
]
