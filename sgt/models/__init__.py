"""Classifiers: plain ``nn.Module``s returning logits ``(B, classes)``."""

from sgt.errors import ModelError
from sgt.models.mnist_cnn import MNISTNet
from sgt.models.resnet import ResNet, cifar_resnet, resnet18, resnet20, resnet32
from sgt.models.torchvision_model import torchvision_model
from sgt.models.vgg import VGG16

__all__ = [
    "VGG16",
    "MNISTNet",
    "ModelError",
    "ResNet",
    "cifar_resnet",
    "resnet18",
    "resnet20",
    "resnet32",
    "torchvision_model",
]
