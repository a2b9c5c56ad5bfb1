"""The SGT objective against a hand computation, and its effect on gradients."""

import math
from functools import partial

import pytest
import torch

from sgt import SaliencyGuidedModule, sgt_objective
from sgt.models import MNISTNet


def test_objective_equals_hand_computed_ce_plus_lambda_kl():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    masked = torch.tensor([[1.0, 1.0, 0.0], [0.3, -0.2, 0.1]])
    y = torch.tensor([0, 2])
    lam = 0.7

    def softmax(row):
        e = [math.exp(v) for v in row]
        return [v / sum(e) for v in e]

    ce = kl = 0.0
    for row, mrow, t in zip(logits.tolist(), masked.tolist(), y.tolist(), strict=True):
        p, q = softmax(row), softmax(mrow)
        ce += -math.log(p[t]) / 2
        kl += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True)) / 2
    out = sgt_objective(logits, y, masked, lam)
    assert math.isclose(out.ce.item(), ce, rel_tol=1e-6)
    assert math.isclose(out.kl.item(), kl, rel_tol=1e-6)  # KL(p_orig ‖ p_masked), batchmean
    assert math.isclose(out.loss.item(), ce + lam * kl, rel_tol=1e-6)


def test_kl_direction_is_original_to_masked():
    logits = torch.tensor([[3.0, 0.0]])
    masked = torch.tensor([[0.0, 0.0]])
    forward = sgt_objective(logits, torch.tensor([0]), masked).kl
    reverse = sgt_objective(masked, torch.tensor([0]), logits).kl
    assert not math.isclose(forward.item(), reverse.item())


def test_k_zero_is_plain_cross_entropy():
    torch.manual_seed(0)
    net = MNISTNet()
    module = SaliencyGuidedModule(net, partial(torch.optim.SGD, lr=0.1), k=0.0)
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))
    torch.manual_seed(1)
    out = module.sgt_forward(x, y)
    torch.manual_seed(1)  # same dropout mask
    expected = torch.nn.functional.cross_entropy(net(x), y)
    torch.testing.assert_close(out.objective.loss, expected)
    assert out.objective.kl.item() == 0 and out.masked_logits is None


def _param_grads(k, saliency_mode="eval"):
    torch.manual_seed(0)
    net = MNISTNet().eval()  # no dropout: the only difference is the KL term
    module = SaliencyGuidedModule(net, k=k, saliency_mode=saliency_mode, seed=3)
    module.net.eval()
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    net.zero_grad()
    module.sgt_forward(x, y).objective.loss.backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def test_sgt_changes_parameter_gradients_versus_plain_training():
    plain, sgt = _param_grads(0.0), _param_grads(0.5)
    assert not torch.allclose(plain, sgt)


def test_train_mode_saliency_reuses_the_forward_and_matches_eval_mode_without_dropout():
    # With dropout/BN inactive both modes see the same function: same masked input, same loss.
    torch.testing.assert_close(_param_grads(0.5, "eval"), _param_grads(0.5, "train"))


def test_masked_bn_stats_false_keeps_running_statistics_to_clean_batches():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 1, 28, 28, generator=g) * 3 + 1, torch.randint(0, 10, (8,), generator=g)

    def running_mean(masked_bn_stats):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                                  torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))
        module = SaliencyGuidedModule(net, k=0.5, masked_bn_stats=masked_bn_stats)
        module.net.train()
        module.sgt_forward(x, y)
        return net[1].running_mean.clone(), net[1].momentum

    torch.manual_seed(0)
    clean = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    clean(x)  # one clean batch: the expected running mean
    frozen, momentum = running_mean(False)
    torch.testing.assert_close(frozen, clean[1].running_mean)
    assert momentum == 0.1  # restored after the masked pass
    assert not torch.allclose(running_mean(True)[0], clean[1].running_mean)


def test_labels_outside_the_classes_are_named_through_the_library_api() -> None:
    """A user's own loader with a label >= num_classes: one clear error, not an index error
    from cross-entropy (a device-side assert on a GPU)."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from sgt.errors import SettingError

    module = SaliencyGuidedModule(MNISTNet(num_classes=10), num_classes=10,
                                  optimizer=partial(torch.optim.SGD, lr=0.1))
    data = TensorDataset(torch.randn(8, 1, 28, 28), torch.tensor([1, 2, 3, 12, 0, 1, 2, 3]))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with pytest.raises(SettingError, match=r"label 12 is outside the model's 10 classes"):
        trainer.fit(module, DataLoader(data, batch_size=8))
