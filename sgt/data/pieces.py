"""ERASER's whitespace words as a pretrained tokenizer's word pieces, and back (docs/hf.md).

A row of words (the query or first text, a separator, the documents) becomes the
tokenizer's text pair, ``[CLS] first [SEP] second [SEP]`` (a row without a separator: one
text), cut at ``max_length`` pieces from the end of the second text (``only_second``: the
query is kept whole, the documents are truncated). Every piece keeps the row position of
the word it came from, so a rationale over words marks exactly their pieces and a piece's
saliency goes back to its word (:mod:`sgt.evaluation.eraser` sums a word's pieces).

A word the tokenizer turns into no piece at all (a zero-width space, a lone control
character) is encoded as the tokenizer's unknown token instead: every word the model reads
has at least one piece, so the words it reads are a prefix of each document, as ERASER's
results file assumes.
"""

from __future__ import annotations

from typing import Any

from sgt.errors import SettingError

Encoded = tuple[list[int], list[int]]  # piece ids; per piece, its word's row position (-1: none)


def _pair(words: list[str], separator: str, sep_token: str
          ) -> tuple[list[str], list[str] | None, int]:
    """The row as ``(first, second or None, offset)``: split at its first separator; later
    separators (between documents) become the tokenizer's own; ``offset`` is the row
    position of the second text's first word."""
    if separator not in words:
        return list(words), None, 0
    cut = words.index(separator)
    return words[:cut], [sep_token if w == separator else w for w in words[cut + 1:]], cut + 1


def _readable_words(words: list[str], separator: str, max_length: int) -> int:
    """How many of the row's words can hold pieces within ``max_length``: the first text
    whole (``only_second`` never cuts it), then ``max_length`` words more."""
    first = words.index(separator) + 1 if separator in words else 0
    return first + max_length


def encode_pieces(tokenizer: Any, words: list[str], separator: str, max_length: int,
                  where: str = "a row") -> Encoded:
    """One row of words -> ``(piece ids, row position of each piece's word)``.

    Args:
        tokenizer: a fast ``transformers`` tokenizer (``word_ids()``).
        words: the row: the first text's words, ``separator``, the documents' words
            (documents separated by ``separator`` too).
        separator: the row's separator word.
        max_length: most pieces, special tokens included.
        where: names the row in the error for a first text longer than ``max_length``.
    """
    # every word gives a piece at least: words beyond max_length can never be read
    first, second, offset = _pair(words[: _readable_words(words, separator, max_length)],
                                  separator, tokenizer.sep_token)
    for _ in range(2):  # a second pass only when a word gave no piece
        enc = tokenizer(first, second, is_split_into_words=True, max_length=max_length,
                        truncation="only_second" if second is not None else True)
        positions = [-1 if w is None else w + (offset if s == 1 else 0)
                     for w, s in zip(enc.word_ids(), enc.sequence_ids(), strict=True)]
        seen = set(positions)
        last = max(seen)
        lost = [p for p in range(last) if p not in seen and p != offset - 1]
        if not lost:
            break
        for p in lost:
            if p < offset - 1 or second is None:
                first[p] = tokenizer.unk_token
            else:
                second[p - offset] = tokenizer.unk_token
    if second and (last < offset):
        raise SettingError(f"dataset.max_length={max_length} pieces hold only the query of "
                           f"{where}; raise dataset.max_length")
    return list(enc["input_ids"]), positions


__all__ = ["Encoded", "encode_pieces"]
