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
from torchmetrics.classification import MulticlassAccuracy

from sgt.checkpoint_io import NET_KEY, net_name
from sgt.checks import check_choice, check_flag
from sgt.errors import NonFiniteError, SettingError
from sgt.features import Modality, feature_saliency, get_modality
from sgt.losses import SGTLoss, check_lam, sgt_objective
from sgt.masking import Fill, check_fraction, get_fill, mask_features, num_masked
from sgt.saliency import Output, check_output, input_gradient, target_score

SaliencyMode = Literal["eval", "train"]
SALIENCY_MODES = ("eval", "train")
NanPolicy = Literal["stop", "skip", "off"]
NAN_POLICIES = ("stop", "skip", "off")
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
        saliency_output: differentiate the target ``logit`` or its ``log_prob``.
        modality: what a feature is (``image``, ``timeseries``, ``text``).
        concat_forward: run clean and masked inputs as one batch (one forward; BatchNorm
            statistics then mix both).
        nan_policy: on non-finite saliency/loss ``stop`` the run, ``skip`` the batch, or ``off``.
        seed: seeds the masking generator (plus the process rank under DDP).
        channels_last: store ``net``'s 4-D weights channels-last (faster convs on GPUs).
        masked_bn_stats: let the masked forward update BatchNorm running statistics (the
            original did); ``False`` keeps them to clean batches (separate passes only).
        compile: ``torch.compile`` ``net`` once Lightning sets the model up (the saliency,
            clean and masked passes all run through the compiled module).
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
        compile: bool = False,
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
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.k, self.lam, self.abs = float(k), float(lam), abs
        self.saliency_mode, self.saliency_output = saliency_mode, saliency_output
        self.modality = get_modality(modality) if isinstance(modality, str) else modality
        self.concat_forward, self.nan_policy, self.seed = concat_forward, nan_policy, seed
        self.channels_last, self.compile_net, self._compiled = channels_last, compile, False
        self.masked_bn_stats = masked_bn_stats
        self.skipped_batches = 0
        self._generator: torch.Generator | None = None
        self._generator_state: Tensor | None = None
        # torchmetrics objects reduce over the epoch *and* over DDP processes, at epoch end.
        self.metrics = nn.ModuleDict({
            f"{split}_{name}": MulticlassAccuracy(num_classes, average="micro")
            for split in ("train", "val", "test") for name in ("acc", "acc_masked")
        } | {
            f"{split}_{name}": MeanMetric()
            for split in ("train", "val", "test") for name in ("loss", "ce", "kl")
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
        for flag in ("abs", "masked_bn_stats", "concat_forward", "channels_last", "compile"):
            check_flag(s[flag], f"sgt.{flag}")
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
            self.net.compile()  # in place: state-dict keys stay those of ``net``
            self._compiled = True

    def _log_step(self, split: str, out: StepOutput, y: Tensor) -> None:
        """Epoch means as ``split/name`` (synchronised across processes by torchmetrics);
        the training loss also per step, for the progress bar."""
        if split == "train":
            self.log("train/loss_step", out.objective.loss, on_step=True, on_epoch=False,
                     prog_bar=True)
        parts = {"loss": out.objective.loss, "ce": out.objective.ce, "kl": out.objective.kl,
                 "acc": out.logits, "acc_masked": out.masked_logits}
        for name, value in parts.items():
            if value is None:
                continue
            metric = self.metrics[f"{split}_{name}"]
            if name.startswith("acc"):
                metric(value.detach(), y)
            else:
                metric(value.detach(), weight=y.shape[0])
            self.log(f"{split}/{name}", metric, on_step=False, on_epoch=True,
                     prog_bar=name == "acc")

    def _guard(self, out: StepOutput, split: str, batch_idx: int) -> bool:
        """Apply ``nan_policy``; ``False`` means skip this batch."""
        if self.nan_policy == "off" or bool(out.finite):
            return True
        what = "loss" if not bool(torch.isfinite(out.objective.loss)) else "saliency"
        where = f"{split} step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
        if self.nan_policy == "stop":
            raise NonFiniteError(
                f"non-finite {what} at {where}: loss={float(out.objective.loss):.4g}, "
                f"ce={float(out.objective.ce):.4g}, kl={float(out.objective.kl):.4g}; "
                "lower the learning rate, check the inputs, or set sgt.nan_policy=skip"
            )
        self.skipped_batches += 1
        self.log("train/skipped_batches", float(self.skipped_batches), on_step=True)
        return False

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch[0], batch[1]  # entries after (x, y) are for evaluations
        out = self.sgt_forward(x, y)
        if not self._guard(out, "train", batch_idx):
            return None
        self._log_step("train", out, y)
        return out.objective.loss

    def _evaluation_step(self, split: str, batch: Sequence[Tensor]) -> None:
        # Saliency needs autograd even where Lightning evaluates under inference mode.
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
        self.skipped_batches = checkpoint.get("sgt_skipped_batches", 0)
