"""DataModules: one per dataset family, sharing the in-memory tensor machinery."""

from sgt.data.cifar10 import CIFAR10DataModule
from sgt.data.eraser import EraserDataModule, EraserSplit, Vocabulary
from sgt.data.image_folder import ImageFolderDataModule
from sgt.data.in_memory import ImageDataModule, InMemoryDataModule
from sgt.data.mnist import MNISTDataModule
from sgt.data.tensor_loader import TensorLoader
from sgt.data.timeseries import TimeSeriesDataModule
from sgt.errors import DatasetCorruptError, DatasetNotFoundError

__all__ = [
    "CIFAR10DataModule",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "EraserDataModule",
    "EraserSplit",
    "ImageDataModule",
    "ImageFolderDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "TensorLoader",
    "TimeSeriesDataModule",
    "Vocabulary",
]
