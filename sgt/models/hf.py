"""Any Hugging Face ``transformers`` sequence classifier, split where SGT takes saliency.

``AutoModelForSequenceClassification.from_pretrained(name_or_path, num_labels=…)`` from a
local folder (or a name already in the local Hugging Face cache): nothing is downloaded.
The model exposes the text models' surface (``sgt.models.text``), so
:class:`sgt.features.TextModality`, SGT and every evaluation use it unchanged:

- ``embed(ids) -> (B, L, D)``: the word-embedding output (``get_input_embeddings()``), the
  tensor saliency is taken w.r.t. and whose lowest-saliency word pieces SGT replaces;
- ``classify(embeddings, tokens, segments) -> (B, classes)``: the rest of the model,
  ``model(inputs_embeds=…, attention_mask=tokens, token_type_ids=segments).logits``; position
  and token-type embeddings are added inside, after the saliency tensor.

The data must be tokenised with the model's own tokenizer (``dataset.tokenizer``,
docs/hf.md); a folder without a classification head (a sentence encoder such as
``sentence-transformers/all-MiniLM-L6-v2``) gets a fresh one for ``num_classes`` labels,
which is logged.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence

from torch import Tensor, nn

from sgt.checks import check_int
from sgt.errors import SettingError
from sgt.hf_local import from_local, same_source

log = logging.getLogger(__name__)


class HFClassifier(nn.Module):
    """A ``transformers`` sequence classifier with the text models' ``embed``/``classify``.

    Args:
        name_or_path: a local folder (``config.json``, weights, tokenizer files) or a name in
            the local Hugging Face cache.
        num_classes: labels of the data (a fresh head when the folder has none for them).
        tokenizer: what the data was tokenised with (``dataset.tokenizer``, given by the
            data); must be ``name_or_path``: the model reads its own tokenizer's pieces.
        pad_id: the padding id (``forward(ids)`` reads every other position).
        vocab_size, vocabulary: given by word-level data; refused (see ``tokenizer``).
    """

    def __init__(self, name_or_path: str | os.PathLike, num_classes: int,
                 tokenizer: str | os.PathLike | None = None,
                 pad_id: int = 0, vocab_size: int | None = None,
                 vocabulary: Sequence[str] | None = None) -> None:
        check_int(num_classes, "model.num_classes", low=2)
        if tokenizer is None:
            raise SettingError(
                f"model=hf reads the word pieces of its own tokenizer, but the data is encoded "
                f"as words with a vocabulary of its own ({vocab_size} entries); set "
                f"dataset.tokenizer={name_or_path} (the recipes for model=hf do)")
        if not same_source(str(tokenizer), str(name_or_path)):
            raise SettingError(f"dataset.tokenizer={tokenizer!r} is not model.name_or_path="
                               f"{name_or_path!r}; the model must read its own tokenizer's "
                               "pieces: set both to the same folder")
        super().__init__()
        from transformers import AutoModelForSequenceClassification

        self.model, info = from_local(
            lambda name, **kw: AutoModelForSequenceClassification.from_pretrained(
                name, num_labels=num_classes, output_loading_info=True, **kw),
            name_or_path, "model", "model.name_or_path")
        self.model.float()  # fp32 master weights; autocast decides the compute precision
        fresh = [k for k in info.get("missing_keys", ()) if "embeddings" not in k]
        if fresh:
            log.info("%s has no classification head for %d labels: a new one is trained "
                     "(%s)", name_or_path, num_classes, ", ".join(sorted(fresh)))
        self.pad_id = pad_id
        # BERT-style models read segment ids; RoBERTa/DistilBERT have none (or one type)
        self.token_types = ("token_type_ids" in inspect.signature(self.model.forward).parameters
                            and getattr(self.model.config, "type_vocab_size", 1) > 1)

    def embed(self, ids: Tensor) -> Tensor:
        """``(B, L)`` piece ids -> ``(B, L, D)`` word-embedding output."""
        return self.model.get_input_embeddings()(ids)

    def classify(self, embeddings: Tensor, tokens: Tensor | None = None,
                 segments: Tensor | None = None) -> Tensor:
        """``(B, L, D)`` word embeddings, ``(B, L)`` bool attention mask and ``(B, L)``
        segment ids (0: first text, 1: the pair's second) -> logits ``(B, classes)``."""
        longest = getattr(self.model.config, "max_position_embeddings", None)
        if longest is not None and embeddings.shape[1] > longest:
            raise SettingError(f"inputs of {embeddings.shape[1]} pieces exceed the model's "
                               f"{longest} positions; set dataset.max_length <= {longest}")
        kwargs: dict[str, Tensor] = {}
        if tokens is not None:
            kwargs["attention_mask"] = tokens.long()
        if segments is not None and self.token_types:
            kwargs["token_type_ids"] = segments.long()
        return self.model(inputs_embeds=embeddings, **kwargs).logits

    def forward(self, ids: Tensor) -> Tensor:
        """Logits of piece ids, every non-padding position read as the first text."""
        return self.classify(self.embed(ids), ids != self.pad_id)


__all__ = ["HFClassifier"]
