"""input_gradient equals a hand-computed autograd gradient and captum's Saliency."""

import torch
from captum.attr import Saliency
from torch import nn

from sgt.models import MNISTNet
from sgt.saliency import input_gradient


def _model_and_batch():
    torch.manual_seed(0)
    model = MNISTNet().eval()
    x = torch.randn(5, 1, 28, 28)
    y = torch.tensor([0, 3, 9, 1, 3])
    return model, x, y


def test_equals_autograd_of_each_target_output_by_hand():
    model, x, y = _model_and_batch()
    grad = input_gradient(model, x, y)
    for i in range(len(y)):  # per sample, one at a time: the slow, obvious way
        xi = x[i : i + 1].clone().requires_grad_(True)
        model(xi)[0, y[i]].backward()
        torch.testing.assert_close(grad[i : i + 1], xi.grad)


def test_equals_captum_saliency_signed():
    model, x, y = _model_and_batch()
    expected = Saliency(model).attribute(x, target=y, abs=False)
    torch.testing.assert_close(input_gradient(model, x, y), expected)


def test_log_prob_output_differentiates_log_softmax():
    model, x, y = _model_and_batch()
    xi = x.clone().requires_grad_(True)
    torch.log_softmax(model(xi), -1).gather(1, y[:, None]).sum().backward()
    torch.testing.assert_close(input_gradient(model, x, y, output="log_prob"), xi.grad)


def test_no_parameter_grad_and_caller_tensor_untouched():
    model, x, y = _model_and_batch()
    x_before = x.clone()
    input_gradient(model, x, y)
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad and x.grad is None and torch.equal(x, x_before)


def test_one_backward_for_the_whole_batch():
    calls = []
    lin = nn.Linear(4, 3)
    lin.register_full_backward_hook(lambda *a: calls.append(1))
    input_gradient(lin, torch.randn(8, 4), torch.zeros(8, dtype=torch.long))
    assert len(calls) == 1
