"""Small ERASER corpora written in ERASER's exact on-disk layout, for the text tests.

Every document is filler words plus one *planted* word that decides the label; the first
evidence group marks the planted word, a second group a two-word filler span (so the
rationale is a union of groups and spans of several tokens). Every third document is
*blank*: no planted word, a random label, only the filler evidence. Blanks make every
class's word necessary (without them a model can predict the last class from the absence
of the others' words, and its saliency rightly ignores that class's word).
FEVER: ``docs/`` folder, the claim as query, ``docids: null``. e-SNLI: ``docs.jsonl``,
premise and hypothesis documents listed hypothesis first (the loader must still put the
premise first), the planted word in the hypothesis.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from sgt.data.eraser import TASKS
from sgt.imputation import one_cpu_thread

FILLER = ("the", "a", "film", "story", "it", "was", "and", "of", "to", "in", "on", "with",
          "some", "many", "people", "said", "that", "year", "city", "team")
PLANTED = {"fever": ("confirmed", "denied"), "esnli": ("same", "maybe", "opposite")}
CLAIM = ("claim", "about", "someone", "something", "here", "there")


@dataclass
class Instance:
    """What a generated annotation says, to compare the loader against."""

    annotation_id: str
    label: int
    query: list[str]
    docids: list[str]  # in encoding order (premise first)
    docs: dict[str, list[str]]
    evidence: list[tuple[str, int, int]]  # (docid, start, end) over every group
    planted: tuple[str, int] | None = None  # (docid, token index); None for a blank


def _sentences(rng: random.Random, count: int) -> list[list[str]]:
    return [[rng.choice(FILLER) for _ in range(rng.randint(3, 6))] for _ in range(count)]


def _flat(sentences: list[list[str]]) -> list[str]:
    return [t for s in sentences for t in s]


def write_corpus(root: Path, task: str, sizes: tuple[int, int, int] = (120, 24, 24),
                 seed: int = 0) -> dict[str, list[Instance]]:
    """Write ``root/{train,val,test}.jsonl`` and the documents; returns what was written."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    docs: dict[str, list[list[str]]] = {}
    written: dict[str, list[Instance]] = {}
    for split, size in zip(("train", "val", "test"), sizes, strict=True):
        lines, written[split] = [], []
        for i in range(size):
            blank = i % 3 == 2
            label = rng.randrange(len(TASKS[task].classes)) if blank else (
                i - i // 3) % len(TASKS[task].classes)
            ann_id = f"{split}_{i}"
            main = f"{ann_id}_hypothesis" if task == "esnli" else f"Doc_{ann_id}"
            sentences = _sentences(rng, rng.randint(2, 4))
            where = rng.randrange(len(sentences))
            if not blank:
                sentences[where].insert(rng.randint(0, len(sentences[where])),
                                        PLANTED[task][label])
            docs[main] = sentences
            flat = _flat(sentences)
            planted_at = -10 if blank else flat.index(PLANTED[task][label])
            ids = [main]
            if task == "esnli":
                docs[f"{ann_id}_premise"] = _sentences(rng, 1)
                ids = [f"{ann_id}_premise", main]
            other = ids[0]  # a group of two filler tokens of the first document
            other_len = len(_flat(docs[other]))
            start = rng.randrange(other_len - 1)
            if other == main and start <= planted_at < start + 2:
                start = 0 if planted_at >= 2 else other_len - 2
            filler = [{"docid": other, "start_token": start, "end_token": start + 2,
                       "start_sentence": -1, "end_sentence": -1,
                       "text": " ".join(_flat(docs[other])[start:start + 2])}]
            evidences = [filler] if blank else [
                [{"docid": main, "start_token": planted_at, "end_token": planted_at + 1,
                  "start_sentence": where, "end_sentence": where + 1,
                  "text": PLANTED[task][label]}], filler]
            query = [rng.choice(CLAIM) for _ in range(3)] if task == "fever" else []
            record = {"annotation_id": ann_id, "classification": TASKS[task].classes[label],
                      "evidences": evidences, "query_type": None,
                      "query": " ".join(query) if query else "What is the relationship?",
                      "docids": list(reversed(ids)) if task == "esnli" else None}
            lines.append(json.dumps(record, sort_keys=True))
            spans = [(other, start, start + 2)]
            written[split].append(Instance(
                ann_id, label, query, ids, {d: _flat(docs[d]) for d in ids},
                spans if blank else [(main, planted_at, planted_at + 1), *spans],
                None if blank else (main, planted_at)))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    if task == "esnli":  # one document per line of docs.jsonl
        (root / "docs.jsonl").write_text("".join(
            json.dumps({"docid": d, "document": "\n".join(" ".join(s) for s in sents)}) + "\n"
            for d, sents in docs.items()))
    else:  # one file per document, one sentence per line
        (root / "docs").mkdir(exist_ok=True)
        for d, sents in docs.items():
            (root / "docs" / d).write_text("\n".join(" ".join(s) for s in sents) + "\n")
    return written


def datamodule(tmp: Path, task: str, sizes: tuple[int, int, int] = (120, 24, 24), **kwargs):
    """An :class:`EraserDataModule` over a fresh corpus in ``tmp/eraser/<task>``."""
    from sgt.data.eraser import EraserDataModule

    written = write_corpus(tmp / "eraser" / task, task, sizes)
    dm = EraserDataModule(data_dir=tmp, task=task, batch_size=32, eval_batch_size=24, **kwargs)
    return dm, written


def single_thread() -> contextlib.AbstractContextManager[None]:
    """Tiny models on a shared 2-core machine: more intra-op threads only contend."""
    return one_cpu_thread(torch.device("cpu"))


@functools.cache
def trained_bilstm(tmp: str, steps: int = 100):
    """A tiny BiLSTM trained on a FEVER planted-word corpus (CPU, about a second); one per
    test session. Weight decay keeps its LSTM gates out of saturation: a saturated gate
    passes almost no gradient back to the planted word, and plain gradients then point at
    the tokens after it instead (measured: top-1 planted ≈ 0.9 with, ≤ 0.3 without)."""
    from sgt.models import BiLSTM

    dm, written = datamodule(Path(tmp), "fever", sizes=(300, 24, 48))
    dm.setup()
    with single_thread():
        torch.manual_seed(0)
        net = BiLSTM(**dm.model_kwargs(), embedding_dim=16, hidden_size=16, dropout=0.0)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-2)
        step = 0
        while step < steps:
            for x, y, *_ in dm.train_dataloader():
                loss = torch.nn.functional.cross_entropy(net(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                if step == steps:
                    break
    return net.eval(), dm, written
