"""The NaN guard of the training step, without reading the GPU every step.

Reading a device value on the host (``bool(flag)``, ``.item()``) waits for every queued
kernel, so the host can no longer run ahead of the GPU: for a small model that costs more
than the step. The guard therefore keeps each step's finite flag on the device and reads the
flags only now and then (:class:`NonFiniteWatch`), and ``skip`` undoes a bad step on the
device (:class:`Rollback`):

- ``stop``: the first non-finite step found is named (step, epoch, batch, which quantity) in
  a :class:`~sgt.errors.NonFiniteError`, raised at the next check: every ``log_every_n_steps``
  steps, at the end of an epoch, and before validation or a checkpoint, so no checkpoint
  holds weights from after the bad step.
- ``skip``: the step runs as usual, then every parameter, buffer (BatchNorm statistics) and
  optimizer state tensor is put back to its value from before the step wherever the step's
  flag is false (``torch.where`` on the device), so the weights stay bit-identical; the
  skipped batches are counted exactly at the next check.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from sgt.errors import NonFiniteError, SettingError


@dataclass
class StepRecord:
    """One training step as the host knows it, and its device-side results."""

    where: str  # e.g. "train step 3 (epoch 0, batch 3)"
    finite: Tensor  # () bool, on the device: saliency and loss all finite
    terms: tuple[Tensor, Tensor, Tensor]  # detached loss, ce, kl


class NonFiniteWatch:
    """The steps since the last check; :meth:`check` reads all their flags in one transfer."""

    def __init__(self) -> None:
        self.pending: list[StepRecord] = []

    def record(self, where: str, finite: Tensor, loss: Tensor, ce: Tensor, kl: Tensor) -> None:
        """Keep a step's flag and loss terms (references only: no kernel, no transfer)."""
        self.pending.append(StepRecord(where, finite.detach(),
                                       (loss.detach(), ce.detach(), kl.detach())))

    def check(self) -> list[StepRecord]:
        """The pending steps that were not finite, in order; forgets all pending steps."""
        if not self.pending:
            return []
        flags = torch.stack([r.finite for r in self.pending]).tolist()  # the one host read
        bad = [r for r, ok in zip(self.pending, flags, strict=True) if not ok]
        self.pending.clear()
        return bad


def non_finite_error(record: StepRecord) -> NonFiniteError:
    """The error ``nan_policy=stop`` raises for a bad step: where, which quantity, values."""
    loss, ce, kl = (float(t) for t in record.terms)
    what = "loss" if not math.isfinite(loss) else "saliency"
    return NonFiniteError(
        f"non-finite {what} at {record.where}: loss={loss:.4g}, ce={ce:.4g}, kl={kl:.4g}; "
        "lower the learning rate, check the inputs, or set sgt.nan_policy=skip")


class Rollback:
    """Undo an optimizer step on the device where a flag says so, reading nothing back.

    :meth:`save` copies the parameters, buffers and optimizer state of ``net`` before the
    step; :meth:`restore` selects, tensor by tensor, the saved value where ``keep`` is false
    (``torch.where``: exact, and a NaN in the discarded value cannot leak). A zeroed gradient
    would not do: momentum, weight decay and Adam's moments still move the weights.

    Two cases need the host: optimizer state that the step *created* (the first step of a
    fresh optimizer) is dropped if that step was bad, which reads the flag once; and a step
    counter the optimizer keeps on the host while the weights are on the GPU (Adam's
    ``step`` unless ``capturable``) cannot be selected on the device, so :meth:`settle`
    takes the skipped steps off it at the next check (until then Adam's bias correction
    sees one step more per skipped batch).
    """

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.net, self.optimizer = net, optimizer
        self._saved: dict[Hashable, Tensor] = {}
        self._host_counters: dict[Hashable, Tensor] = {}
        self._counted: list[Tensor] = []  # keep flags of steps that moved the host counters

    def _tensors(self) -> dict[Hashable, Tensor]:
        """What a step changes, by a key that stays the same from step to step."""
        tensors: dict[Hashable, Tensor] = {
            **{("param", n): p for n, p in self.net.named_parameters()},
            **{("buffer", n): b for n, b in self.net.named_buffers()},
        }
        for i, p in enumerate(p for g in self.optimizer.param_groups for p in g["params"]):
            for key, value in self.optimizer.state.get(p, {}).items():
                if isinstance(value, Tensor):
                    tensors["state", i, key] = value
        return tensors

    def save(self, device: torch.device) -> None:
        """Copy everything the next step changes (into buffers kept from step to step)."""
        tensors = self._tensors()
        with torch.no_grad():
            for key, live in tensors.items():
                if live.device != device:
                    self._check_host_counter(key, live)
                    self._host_counters[key] = live
                    continue
                saved = self._saved.get(key)
                if saved is None or saved.shape != live.shape or saved.dtype != live.dtype:
                    saved = self._saved[key] = torch.empty_like(live)
                saved.copy_(live)
        for key in set(self._saved) - tensors.keys():
            del self._saved[key]

    @staticmethod
    def _check_host_counter(key: Hashable, value: Tensor) -> None:
        if not (isinstance(key, tuple) and key[0] == "state" and key[-1] == "step"
                and value.numel() == 1):
            raise SettingError(
                f"sgt.nan_policy=skip cannot undo the optimizer's state {key!r} kept on "
                f"{value.device} without reading the GPU every step; use sgt.nan_policy=stop "
                "or an optimizer that keeps its state with the weights")

    def restore(self, keep: Tensor) -> None:
        """After the step: put back the saved values wherever ``keep`` (a () bool on the
        device) is false."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = keep.to(torch.int32)  # a bad batch anywhere poisoned the reduced gradients
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            keep = flag.bool()
        tensors = self._tensors()
        with torch.no_grad():
            for key, saved in self._saved.items():
                live = tensors[key]
                torch.where(keep, live, saved, out=live)
        if self._host_counters:
            self._counted.append(keep)
        created = {k[1] for k in tensors.keys() - self._saved.keys() - self._host_counters.keys()
                   if k[0] == "state"}
        if created and not bool(keep):  # state made by this (first) step: one host read
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            for i in created:
                self.optimizer.state.pop(params[i], None)

    def settle(self) -> None:
        """At a check (the host reads the GPU anyway): take the skipped steps off the
        optimizer's host-side step counters."""
        if not self._counted:
            return
        skipped = int((~torch.stack(self._counted)).sum())
        self._counted.clear()
        for counter in self._host_counters.values():
            counter.sub_(skipped)
