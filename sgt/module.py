"""``SaliencyGuidedModule``: saliency → mask → CE + λ·KL in one ``training_step``.

Wraps any classifier ``nn.Module``. Per batch (Ismail et al. 2021, Algorithm 1):
1. saliency = ∂ target output / ∂ input (eval mode by default, like the original code);
2. X̃ = X with its ``k`` least salient features replaced by ``fill`` values (detached);
3. loss = CE(f(X), y) + λ · KL(f(X) ‖ f(X̃)).
``k = 0`` skips 1–2 and is ordinary training through the same code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric

from sgt.checkpoint_io import NET_KEY, net_name
from sgt.checks import check_choice, check_flag, check_int
from sgt.errors import SettingError
from sgt.features import Modality, feature_saliency, get_modality
from sgt.losses import SGTLoss, check_lam, sgt_objective
from sgt.masking import Fill, check_fraction, get_fill, mask_features, num_masked
from sgt.nan_guard import NonFiniteWatch, Rollback, non_finite_error
from sgt.saliency import Output, check_output, input_gradient, target_score

SaliencyMode = Literal["eval", "train"]
SALIENCY_MODES = ("eval", "train")
NanPolicy = Literal["stop", "skip", "off"]
NAN_POLICIES = ("stop", "skip", "off")
# ``sgt.compile``: true (torch.compile's default mode), false, or a torch.compile mode;
# the CUDA-graph modes replay the captured GPU work with one launch (small models).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
# The SGT settings (``configs/sgt``): arguments of SaliencyGuidedModule beyond the objects.
SETTINGS = ("k", "lam", "fill", "fill_args", "abs", "saliency_mode", "saliency_output",
            "masked_bn_stats", "concat_forward", "nan_policy", "channels_last", "compile")


@contextmanager
def frozen_running_stats(net: nn.Module, frozen: bool = True) -> Iterator[None]:
    """BatchNorm layers still normalise with the batch's statistics but leave their running
    statistics as they are (momentum 0), so masked batches do not shift what test time uses."""
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              and frozen]
    saved = [m.momentum for m in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        yield
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum


class BatchMean(MeanMetric):
    """A weighted mean over the epoch (and DDP processes) whose update reads nothing back to
    the host. ``MeanMetric.update`` checks for NaN with ``if nans.any()`` (a GPU sync every
    step), and torchmetrics 1.9 drops the weights under ``nan_strategy="disable"``."""

    def update(self, value: Tensor, weight: Tensor | float = 1.0) -> None:
        """``value``: any shape, each element weighted by the scalar ``weight``."""
        self.mean_value += (value * weight).sum()
        self.weight += weight * value.numel()


@dataclass
class StepOutput:
    """What one SGT forward produced, for the loss and the logs."""

    logits: Tensor
    masked_logits: Tensor | None
    objective: SGTLoss
    finite: Tensor  # () bool: saliency and loss all finite


class SaliencyGuidedModule(pl.LightningModule):
    """Saliency guided training of ``net``.

    Args:
        net: classifier returning logits ``(B, num_classes)`` (text: with ``embed``/``classify``).
        optimizer: ``params -> Optimizer`` (a Hydra ``_partial_``).
        scheduler: ``optimizer -> LRScheduler`` or ``None``; ``total_steps`` is filled in
            when the scheduler asks for it (one-cycle).
        num_classes: for the accuracy metrics.
        k: fraction of features masked per sample, in ``[0, 1)``; 0 = plain training.
        lam: weight λ of the KL term.
        fill: mask distribution, a registered name (``uniform``, ``mean``, ``constant``, …)
            or a :class:`~sgt.masking.Fill`; ``fill_args`` are its keyword arguments.
        abs: rank by |saliency| instead of the signed value (the original used signed).
        saliency_mode: ``eval`` computes saliency with dropout/BatchNorm frozen (as the
            original); ``train`` reuses the training forward (one forward fewer).
        saliency_output: differentiate the target ``logit``, its ``log_prob`` or its ``prob``.
        modality: what a feature is (``image``, ``timeseries``, ``text``).
        concat_forward: run clean and masked inputs as one batch (one forward; BatchNorm
            statistics then mix both).
        nan_policy: on non-finite saliency/loss ``stop`` the run, ``skip`` the batch (its
            update is undone on the device), or ``off``; checked without a GPU sync per step
            (:mod:`sgt.nan_guard`).
        seed: seeds the masking generator (plus the process rank under DDP).
        channels_last: store ``net``'s 4-D weights channels-last (faster convs on GPUs).
        masked_bn_stats: let the masked forward update BatchNorm running statistics (the
            original did); ``False`` keeps them to clean batches (separate passes only).
        compile: ``torch.compile`` ``net`` once Lightning sets the model up (the saliency,
            clean and masked passes all run through the compiled module): ``True`` (the
            default mode) or a mode from ``COMPILE_MODES``; ``reduce-overhead`` (CUDA graphs:
            the step's many small kernels replayed at once, for small models) needs a GPU.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        num_classes: int = 10,
        k: float = 0.5,
        lam: float = 1.0,
        fill: str | Fill = "uniform",
        fill_args: Mapping[str, Any] = MappingProxyType({}),
        abs: bool = False,
        saliency_mode: SaliencyMode = "eval",
        saliency_output: Output = "logit",
        modality: str | Modality = "image",
        concat_forward: bool = False,
        nan_policy: NanPolicy = "stop",
        seed: int = 0,
        channels_last: bool = False,
        compile: bool | str = False,
        masked_bn_stats: bool = True,
    ) -> None:
        super().__init__()
        self.fill: Fill = self.check_settings(
            k=k, lam=lam, fill=fill, fill_args=fill_args, abs=abs, saliency_mode=saliency_mode,
            saliency_output=saliency_output, masked_bn_stats=masked_bn_stats,
            concat_forward=concat_forward, nan_policy=nan_policy, channels_last=channels_last,
            compile=compile)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "fill", "modality",
                                          "fill_args"], logger=False)
        self.net, self.num_classes = net, check_int(num_classes, "num_classes", low=2)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.k, self.lam, self.abs = float(k), float(lam), abs
        self.saliency_mode, self.saliency_output = saliency_mode, saliency_output
        self.modality = get_modality(modality) if isinstance(modality, str) else modality
        self.concat_forward, self.nan_policy, self.seed = concat_forward, nan_policy, seed
        self.channels_last, self.compile_net, self._compiled = channels_last, compile, False
        self.masked_bn_stats = masked_bn_stats
        self.skipped_batches = 0
        self._logged_skipped = 0
        self._watch = NonFiniteWatch()  # the NaN guard's pending steps (nan_policy != off)
        self._rollback: Rollback | None = None  # nan_policy=skip: undoes a bad update
        self._update_finite: Tensor | None = None  # () bool: batches since the last update
        self._generator: torch.Generator | None = None
        self._generator_state: Tensor | None = None
        # Epoch means (accuracy = mean correctness), reduced over the epoch *and* over DDP
        # processes at epoch end; updated on the device without a sync.
        self.metrics = nn.ModuleDict({
            f"{split}_{name}": BatchMean()
            for split in ("train", "val", "test")
            for name in ("loss", "ce", "kl", "acc", "acc_masked")
        })
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in the state dict: a resumed run keeps its best

    # -- settings: every default is the signature's, every check is here ---------------
    @classmethod
    def settings_defaults(cls) -> dict[str, Any]:
        """The SGT settings and their defaults (what ``configs/sgt/default.yaml`` shows)."""
        params = inspect.signature(cls.__init__).parameters
        return {name: params[name].default for name in SETTINGS}

    @classmethod
    def check_settings(cls, **settings: Any) -> Fill:
        """Refuse unknown, mistyped, out-of-range or incompatible settings, naming the value
        and what is allowed; unset ones take their defaults. Returns the fill they describe.
        (The Hydra side calls this before any run dir exists; ``__init__`` calls it too.)"""
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise SettingError(f"unknown setting sgt.{unknown[0]}; allowed: "
                               f"{', '.join(SETTINGS)}")
        s = {**cls.settings_defaults(), **settings}
        check_fraction(s["k"], "sgt.k")
        check_lam(s["lam"], "sgt.lam")
        check_choice(s["saliency_mode"], "sgt.saliency_mode", SALIENCY_MODES)
        check_output(s["saliency_output"], "sgt.saliency_output")
        check_choice(s["nan_policy"], "sgt.nan_policy", NAN_POLICIES)
        for flag in ("abs", "masked_bn_stats", "concat_forward", "channels_last"):
            check_flag(s[flag], f"sgt.{flag}")
        if not isinstance(s["compile"], bool) and s["compile"] not in COMPILE_MODES:
            raise SettingError(f"sgt.compile must be true, false or a torch.compile mode "
                               f"({', '.join(COMPILE_MODES)}), got {s['compile']!r}")
        if s["concat_forward"] and s["saliency_mode"] != "eval":
            raise SettingError("sgt.concat_forward=true needs sgt.saliency_mode=eval (train "
                               "mode already reuses the clean forward for the saliency)")
        if s["concat_forward"] and not s["masked_bn_stats"]:
            raise SettingError("sgt.concat_forward=true runs clean and masked inputs as one "
                               "batch, so BatchNorm statistics cannot be kept to clean ones; "
                               "set sgt.masked_bn_stats=true or sgt.concat_forward=false")
        if not isinstance(s["fill"], str):
            return s["fill"]
        return get_fill(s["fill"], s["fill_args"], "sgt.fill")

    def check_masked_count(self, x: Tensor) -> None:
        """Refuse a ``k`` that masks no feature of any input, or every feature of one:
        ``int(k·N)`` must be between 1 and N − 1 (``x``: a batch of the training data; text
        rows each have their own N), else the run would silently be plain training, or
        train on pure noise."""
        if self.k == 0:
            return
        m = self.modality
        with torch.no_grad():
            z = m.embed(self.net, x)
        valid = m.valid_features(x)
        counts = (torch.full((z.shape[0],), m.to_features(z).shape[1], device=z.device)
                  if valid is None else valid.sum(1))
        masked = num_masked(self.k, counts)
        if bool((masked == 0).all()):
            n = int(counts.max())
            raise SettingError(f"sgt.k={self.k:g} masks no feature: int(k·N) = 0 for inputs "
                               f"of up to N = {n} features; choose k >= {1 / n:.3g}, or "
                               "sgt.k=0 for regular training")
        if bool(((masked >= counts) & (counts > 0)).any()):
            n = int(counts[(masked >= counts) & (counts > 0)][0])
            raise SettingError(f"sgt.k={self.k!r} masks every feature of inputs with {n} "
                               f"features (int(k·{n}) = {n}); choose k < {(n - 1) / n:.4g}")

    # -- the SGT step -------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        return self.modality.classify(self.net, self.modality.embed(self.net, x),
                                      self.modality.valid_features(x))

    def generator(self, device: torch.device) -> torch.Generator:
        """The masking generator on ``device``, seeded once (and restored on resume)."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed * 1009 + self.global_rank)
            if self._generator_state is not None:
                self._generator.set_state(self._generator_state)
                self._generator_state = None
        return self._generator

    def _eval_mode_gradient(self, x: Tensor, y: Tensor, valid: Tensor | None) -> Tensor:
        """∂ target output / ∂ embedding with dropout and BatchNorm frozen."""
        was_training = self.net.training
        self.net.eval()
        try:
            z = self.modality.embed(self.net, x)  # detached inside: input gradient only
            grad = input_gradient(lambda e: self.modality.classify(self.net, e, valid), z, y,
                                  self.saliency_output)
        finally:
            self.net.train(was_training)
        return grad

    def sgt_forward(self, x: Tensor, y: Tensor, masked: bool = True) -> StepOutput:
        """Logits of the clean and (if ``k > 0``) masked inputs and the objective."""
        m, net = self.modality, self.net
        valid = m.valid_features(x)
        if self.k == 0 or not masked:
            logits = m.classify(net, m.embed(net, x), valid)
            objective = sgt_objective(logits, y)
            return StepOutput(logits, None, objective, torch.isfinite(objective.loss))

        if self.saliency_mode == "eval":
            grad = self._eval_mode_gradient(x, y, valid)
            z = m.embed(net, x)
            logits = None
        else:  # reuse the training forward: its graph serves the saliency and the loss
            z = m.embed(net, x)
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            logits = m.classify(net, z, valid)
            (grad,) = torch.autograd.grad(target_score(logits, y, self.saliency_output), z,
                                          retain_graph=True)
        saliency = feature_saliency(m, grad, self.abs)  # (B, N)
        features = m.to_features(z.detach())  # (B, N, C); no gradient through the mask
        masked_features, _ = mask_features(features, saliency, self.k, self.fill,
                                           generator=self.generator(z.device), valid=valid,
                                           grid=m.grid(z))
        z_masked = m.from_features(masked_features, z)
        if logits is None and self.concat_forward:
            both_valid = None if valid is None else torch.cat([valid, valid])
            logits, masked_logits = m.classify(net, torch.cat([z, z_masked]),
                                               both_valid).chunk(2)
        else:
            if logits is None:
                logits = m.classify(net, z, valid)
            with frozen_running_stats(net, frozen=not self.masked_bn_stats):
                masked_logits = m.classify(net, z_masked, valid)
        objective = sgt_objective(logits, y, masked_logits, self.lam)
        finite = torch.isfinite(saliency).all() & torch.isfinite(objective.loss)
        return StepOutput(logits, masked_logits, objective, finite)

    # -- Lightning hooks ----------------------------------------------------------------
    def configure_model(self) -> None:
        """Speed options, applied before Lightning wraps ``net`` (DDP) or makes optimizers."""
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net and not self._compiled:
            mode = None if self.compile_net is True else self.compile_net
            device = self._training_device()
            if mode in CUDA_GRAPH_MODES and device.type != "cuda":
                raise SettingError(
                    f"sgt.compile={mode} captures CUDA graphs, which need a GPU; this run "
                    f"trains on {device.type}: use sgt.compile=true (or "
                    "max-autotune-no-cudagraphs) there")
            self.net.compile(mode=mode)  # in place: state-dict keys stay those of ``net``
            self._compiled = True

    def _training_device(self) -> torch.device:
        """Where the steps will run (Lightning calls ``configure_model`` before moving us)."""
        if self._trainer is not None:
            return self.trainer.strategy.root_device
        return next(self.net.parameters()).device

    def _mark_cuda_graph_step(self) -> None:
        """CUDA graphs may reuse their outputs' memory on the next replay: tell torch where a
        new step starts, so the saliency, clean and masked passes do not overwrite each other's
        results across steps."""
        if self._compiled and self.compile_net in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()

    def _log_step(self, split: str, out: StepOutput, y: Tensor) -> None:
        """Epoch means as ``split/name`` (synchronised across processes by torchmetrics),
        updated on the device; a skipped training batch (``nan_policy=skip``) weighs 0."""
        batch = y.shape[0]
        keep = out.finite if split == "train" and self.nan_policy == "skip" else None
        weight = batch if keep is None else keep.float() * batch
        for name, value in (("loss", out.objective.loss), ("ce", out.objective.ce),
                            ("kl", out.objective.kl)):
            value = value.detach()
            metric = self.metrics[f"{split}_{name}"]
            metric.update(value if keep is None else torch.where(keep, value, 0.0), weight)
            self.log(f"{split}/{name}", metric, on_step=False, on_epoch=True)
        for name, logits in (("acc", out.logits), ("acc_masked", out.masked_logits)):
            if logits is None:
                continue
            metric = self.metrics[f"{split}_{name}"]
            correct = (logits.detach().argmax(-1) == y).float()  # (B,)
            metric.update(correct, 1.0 if keep is None else keep.float())
            self.log(f"{split}/{name}", metric, on_step=False, on_epoch=True,
                     prog_bar=name == "acc")

    def _log_step_loss(self, loss: Tensor) -> None:
        """The training loss per step, for the logs and the progress bar: only on the steps
        the loggers write (every ``trainer.log_every_n_steps``) and an epoch's last, as a host
        value. A GPU value in the progress bar would be read back, a sync, after every step."""
        every = self.trainer.log_every_n_steps
        if (every and (self.global_step + 1) % every == 0) or self.trainer.is_last_batch:
            self.log("train/loss_step", loss.detach().cpu(), on_step=True, on_epoch=False,
                     prog_bar=True)

    def check_labels(self, y: Tensor) -> None:
        """Labels must index the ``num_classes`` outputs; else cross-entropy fails with an
        index error (a device-side assert on a GPU). One host read: the first batch of each
        epoch is checked."""
        low, high = torch.stack([y.min(), y.max()]).tolist()
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise SettingError(f"label {bad} is outside the model's {self.num_classes} classes "
                               f"(labels must be in [0, {self.num_classes - 1}]); fix the "
                               f"labels, or build the module with num_classes={high + 1}")

    def on_train_batch_start(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        if batch_idx == 0:  # one host read per epoch
            self.check_labels(batch[1])

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]  # entries after (x, y) are for evaluations
        self._mark_cuda_graph_step()
        out = self.sgt_forward(x, y)
        if self.nan_policy != "off":
            where = (f"train step {self.global_step} (epoch {self.current_epoch}, "
                     f"batch {batch_idx})")
            self._watch.record(where, out.finite, out.objective.loss, out.objective.ce,
                               out.objective.kl)
        if self.nan_policy == "skip":
            self._update_finite = (out.finite if self._update_finite is None
                                   else self._update_finite & out.finite)
        self._log_step("train", out, y)
        if self._trainer is not None:
            self._log_step_loss(out.objective.loss)
        return out.objective.loss

    # -- the NaN guard: flags stay on the device, read every few steps (sgt.nan_guard) ---
    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any,
                       optimizer_closure: Callable[[], Any] | None = None) -> None:
        """``nan_policy=skip``: save what the step changes, step, then undo it on the device
        if any batch since the last update was not finite."""
        if self.nan_policy != "skip":
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
            return
        inner = getattr(optimizer, "optimizer", optimizer)  # Lightning's wrapper
        if self._rollback is None or self._rollback.optimizer is not inner:
            self._rollback = Rollback(self.net, inner)
        self._rollback.save(self._training_device())
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self._update_finite is not None:  # None: the closure ran no training step
            self._rollback.restore(self._update_finite)
            self._update_finite = None

    def check_finite(self) -> None:
        """Read the flags of the steps since the last check (one transfer): ``stop`` raises
        naming the first bad step; ``skip`` counts the skipped batches."""
        bad = self._watch.check()
        if self._rollback is not None:
            self._rollback.settle()
        if bad and self.nan_policy == "stop":
            raise non_finite_error(bad[0])
        self.skipped_batches += len(bad)

    def _log_skipped(self, on_step: bool) -> None:
        if self.nan_policy == "skip" and self.skipped_batches != self._logged_skipped:
            self._logged_skipped = self.skipped_batches
            self.log("train/skipped_batches", torch.tensor(float(self.skipped_batches)),
                     on_step=on_step, on_epoch=not on_step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = self.trainer.log_every_n_steps or 50
        if self.global_step % every == 0 or self.trainer.is_last_batch:
            self.check_finite()
            self._log_skipped(on_step=True)

    def on_train_epoch_end(self) -> None:
        self.check_finite()
        self._log_skipped(on_step=False)

    def on_validation_epoch_start(self) -> None:
        self.check_finite()  # before validation picks a checkpoint

    def on_train_end(self) -> None:
        self.check_finite()

    def _evaluation_step(self, split: str, batch: Sequence[Tensor]) -> None:
        # Saliency needs autograd even where Lightning evaluates under inference mode.
        self._mark_cuda_graph_step()
        with torch.inference_mode(False), torch.enable_grad():
            x, y = batch[0].clone(), batch[1].clone()
            out = self.sgt_forward(x, y)
        self._log_step(split, out, y)

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.metrics["val_acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("SaliencyGuidedModule needs an optimizer factory to train")
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs: dict[str, Any] = {}
        wants = inspect.signature(self.scheduler_factory).parameters
        interval = "epoch"
        if "total_steps" in wants and "total_steps" not in getattr(
            self.scheduler_factory, "keywords", {}
        ):
            kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)
            interval = "step"
        scheduler = self.scheduler_factory(optimizer=optimizer, **kwargs)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    # -- exact resume: masking generator and global RNG travel with the checkpoint ------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_finite()  # no checkpoint of weights from after a bad step; exact count
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if self._generator is not None:
            rng["mask"] = self._generator.get_state()
        checkpoint["sgt_rng"] = rng
        checkpoint["sgt_skipped_batches"] = self.skipped_batches
        checkpoint[NET_KEY] = net_name(self.net)  # named when the weights do not fit

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("sgt_rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self._generator, self._generator_state = None, rng.get("mask")
        self.skipped_batches = self._logged_skipped = checkpoint.get("sgt_skipped_batches", 0)
