"""The original implementation's SGT step (``interpretable.py`` + ``Helper.py``,
docs/paper.md §1.2/§1.4), reimplemented for timing only: captum saliency moved to the host,
then a Python loop over samples and channels with ``.item()`` syncs and numpy random fills
copied back to the device. What ``ours ÷ original code`` compares against."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from experiments.bench.cases import Step, autocast


def paper_code_step(net: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                    precision: str, k: float = 0.5) -> Step:
    """One SGT step as the original code takes it (``precision``: a ``trainer.precision``)."""
    from captum.attr import Saliency

    saliency = Saliency(net)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        data = x.clone().requires_grad_(True)  # the original sets data.requires_grad = True
        net.eval()
        with autocast(device, precision):
            grads = saliency.attribute(data, target=y, abs=False)
        sal = grads.mean(1).detach().cpu()  # (B, H, W), on the host
        net.train()
        masked = data.detach().clone()
        count = max(1, int(sal[0].numel() * k))
        for i in range(len(masked)):  # per-sample loop, as the original
            idx = torch.topk(sal[i].flatten(), count, largest=False).indices
            mask = torch.zeros(sal[i].numel(), dtype=torch.bool)
            mask[idx] = True
            mask = mask.view_as(sal[i]).to(device)
            for c in range(masked.shape[1]):  # per channel: .item() syncs, numpy draws
                lo, hi = masked[i, c].min().item(), masked[i, c].max().item()
                fill = np.random.uniform(lo, hi, size=count)
                masked[i, c][mask] = torch.tensor(fill, dtype=masked.dtype).to(device)
        with autocast(device, precision):
            out, out_masked = net(data), net(masked)
            loss = F.cross_entropy(out, y) + F.kl_div(
                F.log_softmax(out_masked, 1), F.softmax(out, 1), reduction="batchmean")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step
