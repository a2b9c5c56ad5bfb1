"""Classifiers: plain ``nn.Module``s returning logits ``(B, classes)``."""

from sgt.errors import ModelError
from sgt.models.embeddings import read_vectors, token_embedding
from sgt.models.hf import HFClassifier
from sgt.models.mnist_cnn import MNISTNet
from sgt.models.resnet import ResNet, cifar_resnet, resnet18, resnet20, resnet32
from sgt.models.text import BiLSTM, TextClassifier, TextTransformer
from sgt.models.timeseries import LSTM, TCN, LSTMWithInputCellAttention, Transformer
from sgt.models.timm_model import timm_model
from sgt.models.torchvision_model import torchvision_model
from sgt.models.vgg import VGG16

__all__ = [
    "LSTM",
    "TCN",
    "VGG16",
    "BiLSTM",
    "HFClassifier",
    "LSTMWithInputCellAttention",
    "MNISTNet",
    "ModelError",
    "ResNet",
    "TextClassifier",
    "TextTransformer",
    "Transformer",
    "cifar_resnet",
    "read_vectors",
    "resnet18",
    "resnet20",
    "resnet32",
    "timm_model",
    "token_embedding",
    "torchvision_model",
]
