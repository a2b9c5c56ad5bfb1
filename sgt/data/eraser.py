"""ERASER text tasks (DeYoung et al. 2020, https://www.eraserbenchmark.com) as token ids.

On-disk layout (ERASER's own, docs/paper.md §3(c)), under ``<data_dir>/eraser/<task>/``:

- ``{train,val,test}.jsonl``: one annotation per line: ``annotation_id``, ``query``,
  ``classification``, ``evidences`` (groups of ``{docid, start_token, end_token, …}``,
  tokens counted in the flattened document, end exclusive) and, where present, ``docids``;
- ``docs/<docid>`` (one sentence per line, tokens joined by spaces) or ``docs.jsonl``
  (``{"docid", "document"}`` per line). Tokens are split exactly as ERASER's
  ``load_documents`` does, so evidence offsets and document lengths are ERASER's.

An instance's documents are its ``docids``, else the documents its evidences name (in order
of appearance), else the document named like the annotation (Movies).

**Encoding** (ERASER's BERT baselines put ``query [SEP] document``):

- ``movies``: ``review``. The query is the same sentence for every review, so it is left out.
- ``fever``: ``claim [SEP] document``.
- ``esnli``: ``premise [SEP] hypothesis`` (premise = the docid ending in ``premise`` when the
  ids say so, else the first listed). The query is a fixed question and is left out.

Every row is cut at ``max_length`` tokens (query first, then the documents in order) and
padded with ``[PAD]`` (id 0) to the longest encoded row of the corpus. The default length
is per task: Movies 1024 (the median review has 729 tokens and 82 % of the 2000 reviews fit
whole, keeping almost all their rationales, at a quarter of the longest review's cost),
FEVER 512, e-SNLI 128 (one sentence each).

**Features**: the document tokens only. Padding, ``[SEP]`` and the query (FEVER's claim) are
never ranked or removed, as ERASER removes document tokens only; the DataModule's
:meth:`EraserDataModule.modality_kwargs` encodes this for :class:`sgt.features.TextModality`.

**Human rationale**: per row a bool mask of the encoded positions covered by any evidence
span of any evidence group (ERASER scores their union); spans cut by ``max_length`` are cut
too. What was cut is kept as counts, since ERASER's scorer reads whole documents: per
document slot, its full length in tokens and its whole rationale's length. Batches of every
split are ``(ids (B, L) int64, labels (B,), rationale (B, L) bool, doc_lengths (B, D),
doc_rationale (B, D))``, ``D`` the most documents an instance has.

**Word pieces** (``tokenizer``: a Hugging Face tokenizer, for ``model=hf``): each row is
the tokenizer's ``[CLS] first [SEP] second [SEP]`` text pair, ``first`` being what the
encoding above puts before its first ``[SEP]`` (FEVER's claim, e-SNLI's premise; Movies: a
single text), cut at ``max_length`` pieces (default: the task's, at most the tokenizer's
``model_max_length``, 512 for BERT) from the end of the documents. Rationales, document
lengths and the results file stay in ERASER's words; every piece records its word
(:mod:`sgt.data.pieces`, docs/hf.md).

**Vocabulary**: the training split's document (and query) tokens with at least
``min_freq`` occurrences, most frequent first (ties alphabetically), at most
``max_vocab_size`` entries in all; ids 0-2 are reserved for ``[PAD]``, ``[UNK]`` and
``[SEP]``. Encoded corpus and vocabulary are cached in ``cache_dir``, keyed by the source
files and these settings.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sgt.checks import check_choice, check_flag, check_int, utf8_lines
from sgt.data.cache import cached, fingerprint
from sgt.data.in_memory import InMemoryDataModule, Split
from sgt.data.pieces import Encoded, encode_pieces
from sgt.errors import DatasetCorruptError, DatasetNotFoundError, SettingError
from sgt.hf_local import load_tokenizer

PAD, UNK, SEP = "[PAD]", "[UNK]", "[SEP]"
PAD_ID, UNK_ID, SEP_ID = 0, 1, 2
RESERVED = (PAD, UNK, SEP)
SPLITS = ("train", "val", "test")
FORMAT_VERSION = 2  # bump when the encoding changes: old cache files are then ignored
DOWNLOAD = "https://www.eraserbenchmark.com"


@dataclass(frozen=True)
class EraserTask:
    """What differs between ERASER tasks: class names (label = position), whether the query
    is part of the input, and the default ``max_length``."""

    name: str
    classes: tuple[str, ...]
    has_query: bool
    max_length: int


TASKS: dict[str, EraserTask] = {
    "movies": EraserTask("movies", ("NEG", "POS"), has_query=False, max_length=1024),
    "fever": EraserTask("fever", ("SUPPORTS", "REFUTES"), has_query=True, max_length=512),
    "esnli": EraserTask("esnli", ("entailment", "neutral", "contradiction"), has_query=False,
                        max_length=128),
}


# -- reading ERASER's files -----------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    docid: str
    start_token: int  # inclusive, in the flattened document
    end_token: int  # exclusive


@dataclass(frozen=True)
class Annotation:
    """One line of ``{split}.jsonl`` (``where`` = ``"<file>, line <n>"`` for messages)."""

    annotation_id: str
    query: str
    label: int
    docids: tuple[str, ...]
    evidences: tuple[Evidence, ...]
    where: str


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of one of the task's files; a byte that is not UTF-8 names
    the file and its offset."""
    return utf8_lines(path, DatasetCorruptError,
                      f"restore the file from ERASER's release ({DOWNLOAD}) or save it as UTF-8")


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` per non-blank line; bad JSON names the file and line."""
    for number, line in _text_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetCorruptError(
                f"{path}, line {number}: not valid JSON ({err.msg} at column {err.colno}); "
                "fix or restore that line") from None
        if not isinstance(record, dict):
            raise DatasetCorruptError(f"{path}, line {number}: expected a JSON object, "
                                      f"found {type(record).__name__}; restore that line")
        yield number, record


def _evidences(raw: object, where: str) -> tuple[Evidence, ...]:
    """The union of every evidence group's spans (what ERASER scores rationales against)."""
    if not isinstance(raw, list) or not all(isinstance(g, list) for g in raw):
        raise DatasetCorruptError(f"{where}: 'evidences' must be a list of evidence groups "
                                  "(lists of {docid, start_token, end_token}); restore it")
    out = []
    for ev in (ev for group in raw for ev in group):
        try:
            docid, start, end = ev["docid"], ev["start_token"], ev["end_token"]
        except (KeyError, TypeError):
            raise DatasetCorruptError(f"{where}: an evidence lacks docid, start_token or "
                                      f"end_token ({ev!r}); restore that line") from None
        if not isinstance(docid, str) or not isinstance(start, int) or not isinstance(end, int):
            raise DatasetCorruptError(f"{where}: evidence {ev!r} needs a string docid and "
                                      "integer start_token/end_token; restore that line")
        out.append(Evidence(docid, start, end))
    return tuple(out)


def _docids(record: dict[str, Any], evidences: tuple[Evidence, ...], task: EraserTask,
            where: str) -> tuple[str, ...]:
    listed = record.get("docids")
    if listed:
        if not isinstance(listed, list) or not all(isinstance(d, str) for d in listed):
            raise DatasetCorruptError(f"{where}: 'docids' must be a list of strings, got "
                                      f"{listed!r}")
        docids = tuple(dict.fromkeys(listed))
    elif evidences:
        docids = tuple(dict.fromkeys(ev.docid for ev in evidences))
    else:
        docids = (record["annotation_id"],)
    if task.name == "esnli":  # premise first when the ids say which is which
        docids = tuple(sorted(docids, key=lambda d: not d.endswith("premise")))
    return docids


def read_annotations(path: Path, task: EraserTask) -> list[Annotation]:
    """Every annotation of one ``{split}.jsonl`` file, checked field by field."""
    out = []
    for number, record in _jsonl(path):
        where = f"{path}, line {number}"
        missing = [k for k in ("annotation_id", "classification", "evidences") if k not in record]
        if missing:
            raise DatasetCorruptError(f"{where}: no {missing[0]!r} field; every ERASER "
                                      "annotation has annotation_id, query, evidences and "
                                      "classification")
        cls = record["classification"]
        if cls not in task.classes:
            raise DatasetCorruptError(f"{where}: classification {cls!r} is not one of "
                                      f"{task.name}'s classes {list(task.classes)}")
        evidences = _evidences(record["evidences"], where)
        out.append(Annotation(str(record["annotation_id"]), str(record.get("query") or ""),
                              task.classes.index(cls),
                              _docids(record, evidences, task, where), evidences, where))
    return out


def _tokens_of_file(path: Path) -> list[str]:
    """ERASER's ``load_documents``: stripped non-empty lines, split on single spaces."""
    # universal newlines, as ERASER's readlines(): a lone \r ends a line too
    lines = [part.strip() for _, line in _text_lines(path) for part in line.split("\r")]
    return [t for line in lines if line for t in line.split(" ") if t]


def read_documents(root: Path, needed: dict[str, str]) -> dict[str, list[str]]:
    """Flattened tokens of each needed docid (``needed``: docid -> where it is needed),
    from ``docs/`` or ``docs.jsonl`` (ERASER's ``load_documents_from_file``: lines split
    on single spaces, nothing dropped)."""
    folder = root / "docs"
    if folder.is_dir():
        docs = {}
        for docid, where in needed.items():
            path = folder / docid
            if not path.is_file():
                raise DatasetNotFoundError(f"document {docid!r} (needed by {where}) is not in "
                                           f"{folder}", fix=f"restore the file {docid}")
            docs[docid] = _tokens_of_file(path)
        return docs
    path = root / "docs.jsonl"
    found: dict[str, list[str]] = {}
    for number, record in _jsonl(path):
        docid, text = record.get("docid"), record.get("document")
        if not isinstance(docid, str) or not isinstance(text, str):
            raise DatasetCorruptError(f"{path}, line {number}: expected string 'docid' and "
                                      "'document' fields; restore that line")
        if docid in needed:
            found[docid] = [t for line in text.split("\n") for t in line.strip().split(" ")]
    for docid, where in needed.items():
        if docid not in found:
            raise DatasetNotFoundError(f"document {docid!r} (needed by {where}) is not in "
                                       f"{path}", fix="restore that document")
    return found


# -- vocabulary -----------------------------------------------------------------------------
class Vocabulary:
    """Tokens by id (``itos``) and ids by token; unknown tokens map to ``[UNK]``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[: len(RESERVED)]) != RESERVED:
            raise ValueError(f"a vocabulary starts with the reserved tokens {RESERVED}")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, counts: Counter[str], min_freq: int = 1,
              max_size: int | None = None) -> Vocabulary:
        """Reserved tokens, then the tokens seen at least ``min_freq`` times, most frequent
        first (ties alphabetically), ``max_size`` entries at most."""
        words = sorted((t for t, c in counts.items() if c >= min_freq and t not in RESERVED),
                       key=lambda t: (-counts[t], t))
        tokens = [*RESERVED, *words]
        return cls(tokens if max_size is None else tokens[:max_size])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.itos[i] for i in ids]


# -- encoded splits -------------------------------------------------------------------------
@dataclass
class EraserSplit:
    """One encoded split and what ERASER's per-instance results need to point back into
    the documents.

    ``ids (N, L)`` int64, ``labels (N,)``, ``rationale (N, L)`` bool; per instance and
    document slot ``d`` (``-1``/``0`` where an instance has fewer documents):
    ``doc_starts (N, D)`` the position of the document's first token in the row,
    ``doc_kept (N, D)`` how many of its tokens fit in ``max_length``, ``doc_lengths (N, D)``
    its full length in tokens, ``doc_rationale (N, D)`` how many of its tokens (all of them,
    cut or not) the human rationale covers. Word pieces (``dataset.tokenizer``) add
    ``words (N, L)``: each piece's word, counted over the row's document words in order
    (-1: no document word), and count ``doc_starts``/``doc_kept`` in pieces/words.
    """

    ids: Tensor
    labels: Tensor
    rationale: Tensor
    annotation_ids: list[str]
    docids: list[list[str]]
    doc_starts: Tensor
    doc_kept: Tensor
    doc_lengths: Tensor
    doc_rationale: Tensor
    classes: tuple[str, ...] = ()
    words: Tensor | None = None

    def __len__(self) -> int:
        return len(self.annotation_ids)

    def tensors(self) -> Split:
        """``(ids, labels, rationale, doc_lengths, doc_rationale[, words])``: what
        :class:`InMemoryDataModule` batches."""
        extra = () if self.words is None else (self.words,)
        return self.ids, self.labels, self.rationale, self.doc_lengths, self.doc_rationale, *extra

    def state(self) -> dict[str, Any]:
        """Plain tensors, strings and lists (what the cache file holds)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "classes"}

    @classmethod
    def from_state(cls, state: dict[str, Any], classes: tuple[str, ...]) -> EraserSplit:
        return cls(**state, classes=classes)


def encode(annotations: list[Annotation], rows: list[_Row], encoded: list[Encoded],
           documents: dict[str, list[str]], task: EraserTask, width: int,
           pieces: bool = False, pad_id: int = PAD_ID) -> EraserSplit:
    """Ids, masks and offsets of every annotation, padded to ``width`` columns.

    ``encoded``: per row, its ids and the row position each id stands for (word ids: the
    first ``max_length`` positions; word pieces: :func:`sgt.data.pieces.encode_pieces`).
    With ``pieces``, the split also records each piece's document word (``words``).
    """
    n = len(annotations)
    slots = max(len(a.docids) for a in annotations)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    rationale = np.zeros((n, width), dtype=bool)
    words = np.full((n, width), -1, dtype=np.int64)
    starts = np.full((n, slots), -1, dtype=np.int64)
    kept = np.zeros((n, slots), dtype=np.int64)
    lengths = np.zeros((n, slots), dtype=np.int64)
    covered = np.zeros((n, slots), dtype=np.int64)
    for i, (ann, row, (row_ids, positions)) in enumerate(zip(annotations, rows, encoded,
                                                             strict=True)):
        ids[i, : len(row_ids)] = row_ids
        at = np.asarray(positions, dtype=np.int64)  # (pieces,) row position, -1: none
        marked = np.zeros(len(row.tokens) + 1, dtype=bool)  # per row position; [-1]: none
        word = np.full(len(row.tokens) + 1, -1, dtype=np.int64)  # document word index
        encoded_words = np.unique(at[at >= 0])
        for d, docid in enumerate(ann.docids):
            lengths[i, d] = len(documents[docid])
            span = (row.starts[d], row.starts[d] + lengths[i, d])
            inside = encoded_words[(encoded_words >= span[0]) & (encoded_words < span[1])]
            kept[i, d] = len(inside)
            starts[i, d] = row.starts[d] if not pieces else (
                int(np.flatnonzero(at == span[0])[0]) if kept[i, d] else -1)
            word[span[0]: span[1]] = np.arange(lengths[i, d]) + lengths[i, :d].sum()
        whole = [np.zeros(lengths[i, d], dtype=bool) for d in range(len(ann.docids))]
        for ev in ann.evidences:
            if ev.docid not in ann.docids:
                raise DatasetCorruptError(f"{ann.where}: an evidence names document "
                                          f"{ev.docid!r}, not one of the instance's documents "
                                          f"{list(ann.docids)}; restore that line")
            d = ann.docids.index(ev.docid)
            if not 0 <= ev.start_token <= ev.end_token <= lengths[i, d]:
                raise DatasetCorruptError(
                    f"{ann.where}: evidence span [{ev.start_token}, {ev.end_token}) lies outside "
                    f"document {ev.docid!r} ({lengths[i, d]} tokens); restore that line or the "
                    "document")
            whole[d][ev.start_token: ev.end_token] = True
            marked[row.starts[d] + ev.start_token: row.starts[d] + ev.end_token] = True
        rationale[i, : len(at)] = marked[at]
        words[i, : len(at)] = word[at]
        covered[i, : len(whole)] = [int(w.sum()) for w in whole]
    return EraserSplit(torch.from_numpy(ids), torch.tensor([a.label for a in annotations]),
                       torch.from_numpy(rationale), [a.annotation_id for a in annotations],
                       [list(a.docids) for a in annotations], torch.from_numpy(starts),
                       torch.from_numpy(kept), torch.from_numpy(lengths),
                       torch.from_numpy(covered), task.classes,
                       torch.from_numpy(words) if pieces else None)


@dataclass
class _Row:
    tokens: list[str]  # [query, SEP,] doc 1 [, SEP, doc 2 ...], untruncated
    starts: list[int]  # where each document begins


def _row(ann: Annotation, documents: dict[str, list[str]], task: EraserTask,
         lowercase: bool) -> _Row:
    def text(words: list[str]) -> list[str]:  # a literal "[SEP]" in a text is no separator
        return [UNK if w in RESERVED else w.lower() if lowercase else w for w in words]

    tokens = [*text(ann.query.split()), SEP] if task.has_query else []
    starts = []
    for d, docid in enumerate(ann.docids):
        if d:
            tokens.append(SEP)
        starts.append(len(tokens))
        tokens += text(documents[docid])
    return _Row(tokens, starts)


@dataclass
class EraserCorpus:
    vocabulary: Vocabulary | None  # None: word pieces of a pretrained tokenizer
    splits: dict[str, EraserSplit]


def build_corpus(root: Path, task: EraserTask, max_length: int, min_freq: int = 1,
                 max_vocab_size: int | None = None, lowercase: bool = False,
                 tokenizer: Any = None) -> EraserCorpus:
    """Read, tokenise and encode the three splits; the vocabulary comes from ``train``
    (with a pretrained ``tokenizer``: its word pieces, no vocabulary of our own)."""
    annotations = {s: read_annotations(root / f"{s}.jsonl", task) for s in SPLITS}
    for split, anns in annotations.items():
        if not anns:
            raise DatasetCorruptError(f"{root / f'{split}.jsonl'} holds no annotations; "
                                      "restore it")
    needed = {d: a.where for anns in annotations.values() for a in anns for d in a.docids}
    documents = read_documents(root, needed)
    rows = {s: [_row(a, documents, task, lowercase) for a in anns]
            for s, anns in annotations.items()}
    if tokenizer is None:
        vocabulary = Vocabulary.build(Counter(t for row in rows["train"] for t in row.tokens),
                                      min_freq, max_vocab_size)
        encoded = {s: [(vocabulary.encode(row.tokens[:max_length]),
                        list(range(min(max_length, len(row.tokens))))) for row in rows[s]]
                   for s in SPLITS}
    else:
        vocabulary = None
        encoded = {s: [encode_pieces(tokenizer, row.tokens, SEP, max_length, a.where)
                       for a, row in zip(annotations[s], rows[s], strict=True)]
                   for s in SPLITS}
    width = max(len(ids) for split in encoded.values() for ids, _ in split)
    pad = PAD_ID if tokenizer is None else tokenizer.pad_token_id
    return EraserCorpus(vocabulary, {
        s: encode(annotations[s], rows[s], encoded[s], documents, task, width,
                  tokenizer is not None, pad) for s in SPLITS})


def _corpus_state(data: object) -> dict[str, Any]:
    """A cache file's content, if it is an encoded corpus."""
    if not isinstance(data, dict) or set(data) != {"vocabulary", "splits"} or set(
            data["splits"]) != set(SPLITS):
        raise TypeError("not an encoded ERASER corpus")
    return data


# -- the DataModule -------------------------------------------------------------------------
class EraserDataModule(InMemoryDataModule):
    """An ERASER task (``movies``, ``fever``, ``esnli``) with its official val and test sets.

    Args (beyond :class:`~sgt.data.in_memory.InMemoryDataModule`'s; ``val_size`` and
    ``download`` are unused: ERASER has its own validation split and no download here):
        task: which task; fixes the class names (label = position): movies ``NEG, POS``,
            fever ``SUPPORTS, REFUTES``, esnli ``entailment, neutral, contradiction``.
        folder: the task's folder under ``data_dir`` (default ``eraser/<task>``).
        max_length: tokens per row (query and separators included); ``None``: the task's
            default (see the module docstring).
        min_freq: a training token enters the vocabulary from this many occurrences.
        max_vocab_size: most vocabulary entries (reserved ones included); ``None``: all.
        lowercase: lowercase every token (e.g. to match lowercase GloVe vectors).
        cache_dir: where the encoded corpus is cached; ``None`` disables it.
        tokenizer: a Hugging Face tokenizer (local folder or cached name, ``model=hf``'s
            ``model.name_or_path``): rows are its word pieces (:mod:`sgt.data.pieces`,
            docs/hf.md) instead of words of a vocabulary of our own; ``min_freq`` and
            ``max_vocab_size`` are then unused, and ``max_length`` (pieces) defaults to the
            smaller of the task's and the tokenizer's ``model_max_length``.
    """

    name = "eraser"
    modality = "text"

    def __init__(self, *args: Any, task: str = "movies", folder: str | None = None,
                 max_length: int | None = None, min_freq: int = 1,
                 max_vocab_size: int | None = None, lowercase: bool = False,
                 cache_dir: str | Path | None = None, tokenizer: str | Path | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task = TASKS[check_choice(task, "dataset.task", list(TASKS))]
        self.tokenizer_name = None if tokenizer is None else os.fspath(tokenizer)
        self.tokenizer = None if tokenizer is None else load_tokenizer(tokenizer)
        longest = self.task.max_length
        if self.tokenizer is not None:
            if lowercase:
                raise SettingError("dataset.lowercase=true applies to sgt's own vocabulary; "
                                   f"with dataset.tokenizer={tokenizer} the tokenizer decides "
                                   "the case: set dataset.lowercase=false")
            longest = min(longest, self.tokenizer.model_max_length)
        self.max_length = check_int(longest if max_length is None else max_length,
                                    "dataset.max_length", low=2, high=(
                                        None if self.tokenizer is None else
                                        self.tokenizer.model_max_length))
        self.min_freq = check_int(min_freq, "dataset.min_freq")
        if max_vocab_size is not None:
            check_int(max_vocab_size, "dataset.max_vocab_size", low=len(RESERVED) + 1)
        self.max_vocab_size, self.lowercase = max_vocab_size, check_flag(lowercase,
                                                                         "dataset.lowercase")
        self.name = f"eraser-{self.task.name}"
        self.folder = folder or f"eraser/{self.task.name}"
        self.root = self.data_dir / self.folder
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.task.classes

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.task.classes)

    # -- files -------------------------------------------------------------------------
    def _source_files(self) -> list[Path]:
        """Every file the corpus is read from (the cache key); missing ones are reported."""
        holding = (f"{self.folder}/ (ERASER's {self.task.name} release: train/val/test.jsonl "
                   f"and docs/ or docs.jsonl, from {DOWNLOAD}; or set dataset.folder)")
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"ERASER {self.task.name} not found: no folder "
                                       f"{self.root}", holding=holding)
        files = [self.root / f"{s}.jsonl" for s in SPLITS]
        for path in files:
            if not path.is_file():
                raise DatasetNotFoundError(f"ERASER {self.task.name} is incomplete: no {path}",
                                           holding=holding)
        docs = self.root / "docs"
        if docs.is_dir():
            return files + sorted(docs.iterdir())
        if (self.root / "docs.jsonl").is_file():
            return [*files, self.root / "docs.jsonl"]
        raise DatasetNotFoundError(f"ERASER {self.task.name} is incomplete: neither {docs}/ nor "
                                   f"{self.root / 'docs.jsonl'} exists", holding=holding)

    def prepare_data(self) -> None:
        self._source_files()

    @cached_property
    def corpus(self) -> EraserCorpus:
        """The encoded splits and the vocabulary (read once, cached in ``cache_dir``)."""
        settings = (FORMAT_VERSION, self.task, self.max_length, self.min_freq,
                    self.max_vocab_size, self.lowercase, self.tokenizer_name)
        files = self._source_files() + self._tokenizer_files()
        path = None if self.cache_dir is None else (
            self.cache_dir / f"eraser-{self.task.name}-{fingerprint(files, *settings)}.pt")

        def build() -> dict[str, Any]:
            corpus = build_corpus(self.root, self.task, self.max_length, self.min_freq,
                                  self.max_vocab_size, self.lowercase, self.tokenizer)
            return {"vocabulary": corpus.vocabulary and corpus.vocabulary.itos,
                    "splits": {s: split.state() for s, split in corpus.splits.items()}}

        state = cached(path, build, _corpus_state)
        return EraserCorpus(state["vocabulary"] and Vocabulary(state["vocabulary"]),
                            {s: EraserSplit.from_state(v, self.task.classes)
                             for s, v in state["splits"].items()})

    def _tokenizer_files(self) -> list[Path]:
        """The files of the tokenizer's folder, if it is one (part of the cache key)."""
        folder = None if self.tokenizer_name is None else Path(self.tokenizer_name)
        if folder is None or not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file())

    # -- what InMemoryDataModule asks for ----------------------------------------------
    def load_split(self, train: bool) -> Split:
        return self.corpus.splits["train" if train else "test"].tensors()

    def load_val_split(self) -> Split:
        return self.corpus.splits["val"].tensors()

    def eraser_split(self, split: str) -> EraserSplit:
        """A split with its annotation ids, docids and token offsets (for ERASER's
        per-instance results, :func:`sgt.evaluation.write_eraser_results`)."""
        return self.corpus.splits[check_choice(split, "split", SPLITS)]

    # -- text ------------------------------------------------------------------------
    @property
    def vocabulary(self) -> Vocabulary:
        if self.corpus.vocabulary is None:
            raise SettingError(f"dataset.tokenizer={self.tokenizer_name} encodes word pieces; "
                               "there is no vocabulary of sgt's own")
        return self.corpus.vocabulary

    def decode(self, ids: Tensor | Sequence[int] | Sequence[Sequence[int]],
               skip_padding: bool = True) -> list[str] | list[list[str]]:
        """Token strings of one row ``(L,)`` or of rows ``(B, L)``; trailing padding is
        dropped unless ``skip_padding=False`` (positions stay aligned either way)."""
        rows = ids.tolist() if isinstance(ids, Tensor) else ids
        if not rows or not isinstance(rows[0], (list, tuple)):
            return self._decode_row(list(rows), skip_padding)  # type: ignore[arg-type]
        return [self._decode_row(list(r), skip_padding) for r in rows]

    def _decode_row(self, row: list[int], skip_padding: bool) -> list[str]:
        pad = self.modality_kwargs()["pad_id"]
        if skip_padding:
            while row and row[-1] == pad:
                row.pop()
        if self.tokenizer is not None:
            return self.tokenizer.convert_ids_to_tokens(row)
        return self.vocabulary.decode(row)

    def modality_kwargs(self) -> dict[str, Any]:
        """:class:`~sgt.features.TextModality` arguments: which ids are padding and
        separators (word pieces: and ``[CLS]``), and whether the tokens before the first
        separator are the query."""
        if self.tokenizer is not None:
            t = self.tokenizer
            return {"pad_id": t.pad_token_id, "sep_id": t.sep_token_id,
                    "has_query": self.task.has_query, "cls_id": t.cls_token_id}
        return {"pad_id": PAD_ID, "sep_id": SEP_ID, "has_query": self.task.has_query}

    def model_kwargs(self) -> dict[str, Any]:
        """Adds ``vocab_size``, ``pad_id`` and the ``vocabulary`` (for pretrained vectors);
        word pieces: ``tokenizer`` (the model checks it is its own) and ``pad_id``."""
        if self.tokenizer is not None:
            return {**super().model_kwargs(), "tokenizer": self.tokenizer_name,
                    "pad_id": self.tokenizer.pad_token_id}
        return {**super().model_kwargs(), "vocab_size": len(self.vocabulary),
                "pad_id": PAD_ID, "vocabulary": self.vocabulary.itos}


__all__ = [
    "PAD_ID",
    "SEP_ID",
    "TASKS",
    "UNK_ID",
    "Annotation",
    "EraserCorpus",
    "EraserDataModule",
    "EraserSplit",
    "EraserTask",
    "Evidence",
    "Vocabulary",
    "build_corpus",
    "read_annotations",
    "read_documents",
]
