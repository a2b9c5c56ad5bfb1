"""Token embedding tables: learned, or started from pretrained vectors in GloVe's text format.

GloVe's format (https://nlp.stanford.edu/projects/glove/) is one word per line followed by
its numbers, separated by single spaces. Only the vocabulary's words are parsed, so a
multi-gigabyte file costs one pass of string splits. Words without a vector keep a random
vector of the pretrained vectors' spread; the padding row stays zero
(``nn.Embedding(padding_idx=pad_id)`` also keeps its gradient zero), so padding and the
``constant`` fill with value 0 are the same vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from sgt.checks import check_flag, check_int, utf8_lines
from sgt.errors import ModelError, SettingError


def read_vectors(path: str | Path, vocabulary: Sequence[str], dim: int) -> tuple[Tensor, Tensor]:
    """The vectors of ``vocabulary``'s words in a GloVe-format file.

    Every line read must be UTF-8 and every vector kept ``dim`` finite float32 numbers:
    a NaN, an infinity or a number beyond float32's range would make the whole embedding
    (and every logit) NaN, so it is refused naming the file and the line.

    Returns:
        ``(vectors (V, dim) float32, found (V,) bool)``; rows of words not in the file are 0.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model.embeddings_path {path} does not exist; point it at a GloVe-"
                         f"format text file (a word and its {dim} numbers per line) or set it "
                         "to null for learned embeddings")
    index = {word: i for i, word in enumerate(vocabulary)}
    vectors = torch.zeros(len(vocabulary), dim)
    found = torch.zeros(len(vocabulary), dtype=torch.bool)
    fix = (f"point model.embeddings_path at a GloVe-format text file (a word and its {dim} "
           "numbers per line)")
    for number, line in utf8_lines(path, ModelError, fix):
        line = line.rstrip("\r\n").rstrip(" ")
        if number == 1 and len(line.split(" ")) - 1 != dim:
            raise ModelError(f"{path} holds {len(line.split(' ')) - 1}-dimensional vectors "
                             f"(line 1) but model.embedding_dim is {dim}; set "
                             "model.embedding_dim to the file's dimension")
        # the last ``dim`` fields are the vector: a few GloVe words contain spaces
        word, *values = line.rsplit(" ", dim)
        if word in index:
            vectors[index[word]] = _vector(values, dim, f"{path}, line {number}", word)
            found[index[word]] = True
        elif " " in word and word.split(" ", 1)[0] in index:
            _refuse_extra_numbers(word, dim, f"{path}, line {number}")
    return vectors, found


def _vector(values: list[str], dim: int, where: str, word: str) -> Tensor:
    """``dim`` finite float32 numbers, else a :class:`ModelError` naming ``where``."""
    try:
        if len(values) != dim:
            raise ValueError(f"{len(values)} numbers")
        vector = torch.tensor([float(v) for v in values])
    except ValueError as err:
        raise ModelError(f"{where}: expected the word {word!r} and {dim} numbers ({err}); "
                         "fix or remove that line") from None
    finite = vector.isfinite()
    if not bool(finite.all()):
        value = values[int((~finite).nonzero()[0])]
        raise ModelError(f"{where}: the vector of {word!r} holds {value}, which is not a "
                         "finite float32 number (NaN, infinite or beyond ±3.4e38); fix or "
                         "remove that line")
    return vector


def _refuse_extra_numbers(word: str, dim: int, where: str) -> None:
    """A vocabulary word followed by more than ``dim`` numbers is a line with too many
    columns, not a GloVe word that contains spaces: refuse it rather than skip the word."""
    head, *extra = word.split(" ")
    if all(map(_is_number, extra)):
        raise ModelError(f"{where}: the word {head!r} has {dim + len(extra)} numbers, "
                         f"expected {dim}; fix or remove that line")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def token_embedding(vocab_size: int, dim: int, pad_id: int = 0,
                    vocabulary: Sequence[str] | None = None,
                    embeddings_path: str | Path | None = None,
                    freeze: bool = False) -> nn.Embedding:
    """An ``(vocab_size, dim)`` embedding with a zero padding row; from ``embeddings_path``
    (GloVe format, for the words of ``vocabulary``) when given, learned otherwise."""
    check_int(vocab_size, "model.vocab_size", low=2)
    check_int(dim, "model.embedding_dim")
    check_int(pad_id, "model.pad_id", low=0, high=vocab_size - 1)
    check_flag(freeze, "model.freeze_embeddings")
    embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
    if embeddings_path is None:
        if freeze:
            raise SettingError("model.freeze_embeddings=true needs model.embeddings_path: "
                               "frozen random vectors learn nothing")
        return embedding
    if vocabulary is None or len(vocabulary) != vocab_size:
        raise SettingError(f"model.embeddings_path needs the {vocab_size} vocabulary words "
                           "(the DataModule's model_kwargs() passes them as vocabulary)")
    vectors, found = read_vectors(embeddings_path, vocabulary, dim)
    if not bool(found.any()):
        raise ModelError(f"none of the {vocab_size} vocabulary words is in {embeddings_path}; "
                         "check the file, or set dataset.lowercase=true for lowercase vectors")
    with torch.no_grad():
        spread = vectors[found].std() if int(found.sum()) > 1 else torch.tensor(1.0)
        embedding.weight.normal_(0.0, float(spread))
        embedding.weight[found] = vectors[found]
        embedding.weight[pad_id] = 0.0
    embedding.weight.requires_grad_(not freeze)
    return embedding


__all__ = ["read_vectors", "token_embedding"]
