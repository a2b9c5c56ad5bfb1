"""The ERASER loader on corpora written in ERASER's exact layout, and on the real Movies."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

import sgt.data.eraser as eraser
from sgt.data import EraserDataModule, Vocabulary
from sgt.data.eraser import PAD_ID, SEP_ID, UNK_ID
from sgt.errors import DatasetCorruptError, DatasetNotFoundError, SettingError
from sgt.features import TextModality
from tests.conftest import SHARED_DATA
from tests.eraser_corpus import datamodule

MOVIES = SHARED_DATA / "eraser" / "movies"


def _expected_tokens(inst, task: str) -> list[str]:
    tokens = [*inst.query, "[SEP]"] if task == "fever" else []
    for d, docid in enumerate(inst.docids):
        tokens += (["[SEP]"] if d else []) + inst.docs[docid]
    return tokens


@pytest.mark.parametrize("task", ["fever", "esnli"])
def test_round_trip_of_tokens_rationales_and_padding(tmp_path: Path, task: str) -> None:
    dm, written = datamodule(tmp_path, task)
    dm.setup()
    for split in ("train", "val", "test"):
        ids, labels, rationale, doc_lengths, doc_rationale = dm.splits[split]
        meta = dm.eraser_split(split)
        assert ids.dtype == torch.int64 and rationale.dtype == torch.bool
        assert len(meta) == len(written[split]) == len(ids)
        for i, inst in enumerate(written[split]):
            expected = _expected_tokens(inst, task)
            row = ids[i]
            # padding: exactly the positions after the tokens, and they are PAD
            assert torch.equal(row != PAD_ID, torch.arange(len(row)) < len(expected))
            known = dm.vocabulary.stoi  # words never seen in training decode as [UNK]
            assert dm.decode(row) == [t if t in known else "[UNK]" for t in expected]
            assert labels[i] == inst.label
            assert meta.annotation_ids[i] == inst.annotation_id
            assert meta.docids[i] == inst.docids  # e-SNLI: premise first
            # every evidence span lands on its document's tokens, nothing else is rationale
            want = torch.zeros_like(rationale[i])
            for docid, start, end in inst.evidence:
                d = inst.docids.index(docid)
                offset = int(meta.doc_starts[i, d])
                assert expected[offset + start: offset + end] == inst.docs[docid][start:end]
                want[offset + start: offset + end] = True
            assert torch.equal(rationale[i], want)
            assert meta.doc_lengths[i, : len(inst.docids)].tolist() == [
                len(inst.docs[d]) for d in inst.docids]
            # batches carry each document's whole length and whole rationale's length
            assert torch.equal(doc_lengths[i], meta.doc_lengths[i])
            assert doc_rationale[i, : len(inst.docids)].tolist() == [
                len({t for docid, s, e in inst.evidence if docid == d for t in range(s, e)})
                for d in inst.docids]
    assert dm.classes == eraser.TASKS[task].classes


def test_query_and_separators_are_no_features_but_the_model_reads_them(tmp_path: Path) -> None:
    dm, written = datamodule(tmp_path, "fever")
    dm.setup()
    ids = dm.splits["test"][0][:3]
    modality = TextModality(**dm.modality_kwargs())
    valid = modality.valid_features(ids)
    for i, inst in enumerate(written["test"][:3]):
        q = len(inst.query)
        doc = len(inst.docs[inst.docids[0]])
        assert not valid[i, : q + 1].any()  # claim and [SEP]
        assert valid[i, q + 1: q + 1 + doc].all() and not valid[i, q + 1 + doc:].any()
        # what the model reads: claim, [SEP] and document, not the padding
        assert torch.equal(modality.read_positions(valid)[i], ids[i] != PAD_ID)
    assert dm.model_kwargs() == {"num_classes": 2, "vocab_size": len(dm.vocabulary),
                                 "pad_id": PAD_ID, "vocabulary": dm.vocabulary.itos}
    assert dm.modality == "text" and dm.num_classes == 2


def test_esnli_separator_between_premise_and_hypothesis_is_no_feature(tmp_path: Path) -> None:
    dm, written = datamodule(tmp_path, "esnli")
    dm.setup()
    ids = dm.splits["val"][0]
    valid = TextModality(**dm.modality_kwargs()).valid_features(ids)
    inst = written["val"][0]
    premise = len(inst.docs[inst.docids[0]])
    assert ids[0, premise] == SEP_ID and not valid[0, premise]
    assert valid[0, :premise].all()  # no query: the premise's tokens are features
    assert dm.num_classes == 3 and dm.classes == ("entailment", "neutral", "contradiction")


def test_max_length_cuts_rows_and_their_rationale(tmp_path: Path) -> None:
    dm, written = datamodule(tmp_path, "fever", max_length=8)
    dm.setup()
    ids, _, rationale, doc_lengths, doc_rationale = dm.splits["test"]
    meta = dm.eraser_split("test")
    assert ids.shape[1] == 8
    for i, inst in enumerate(written["test"]):
        doc = len(inst.docs[inst.docids[0]])
        start = len(inst.query) + 1
        assert meta.doc_starts[i, 0] == start
        assert meta.doc_kept[i, 0] == min(doc, 8 - start)
        want = torch.zeros(8, dtype=torch.bool)
        for _, s, e in inst.evidence:
            want[start + s: min(start + e, 8)] = True
        assert torch.equal(rationale[i], want)
        # what was cut is still counted: the whole document and the whole rationale
        assert doc_lengths[i, 0] == doc
        assert doc_rationale[i, 0] == len({t for _, s, e in inst.evidence for t in range(s, e)})
    assert bool((doc_rationale.sum(1) > rationale.sum(1)).any())  # some rationale was cut


def test_vocabulary_frequency_order_min_freq_and_size() -> None:
    counts = Counter({"b": 3, "a": 3, "c": 2, "d": 1})
    vocab = Vocabulary.build(counts)
    assert vocab.itos == ["[PAD]", "[UNK]", "[SEP]", "a", "b", "c", "d"]
    assert Vocabulary.build(counts, min_freq=2).itos[3:] == ["a", "b", "c"]
    assert Vocabulary.build(counts, max_size=5).itos[3:] == ["a", "b"]
    assert vocab.encode(["a", "zzz", "d"]) == [3, UNK_ID, 6]
    assert vocab.decode([3, 0]) == ["a", "[PAD]"]


def test_vocabulary_comes_from_training_tokens_only(tmp_path: Path) -> None:
    dm, written = datamodule(tmp_path, "fever", min_freq=2)
    counts = Counter(t for inst in written["train"]
                     for t in _expected_tokens(inst, "fever"))
    words = {t for t, c in counts.items() if c >= 2} - {"[SEP]"}
    assert set(dm.vocabulary.itos[3:]) == words
    assert dm.vocabulary.itos[:3] == ["[PAD]", "[UNK]", "[SEP]"]


def test_the_encoded_corpus_is_cached_and_read_back(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    dm, _ = datamodule(tmp_path, "fever", cache_dir=cache)
    dm.setup()
    assert len(list(cache.glob("eraser-fever-*.pt"))) == 1

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the corpus was rebuilt instead of read from the cache")

    monkeypatch.setattr(eraser, "build_corpus", no_rebuild)
    again = EraserDataModule(data_dir=tmp_path, task="fever", cache_dir=cache, batch_size=32)
    again.setup()
    for a, b in zip(dm.splits["test"], again.splits["test"], strict=True):
        assert torch.equal(a, b)
    assert again.vocabulary.itos == dm.vocabulary.itos
    assert again.eraser_split("test").docids == dm.eraser_split("test").docids
    # another setting is another cache entry
    with pytest.raises(AssertionError, match="rebuilt"):
        _ = EraserDataModule(data_dir=tmp_path, task="fever", cache_dir=cache,
                             batch_size=32, max_length=9).corpus


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_malformed_line_names_the_file_and_line(tmp_path: Path) -> None:
    dm, _ = datamodule(tmp_path, "fever")
    path = dm.root / "val.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:-5]  # cut the closing of line 3
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetCorruptError) as err:
        dm.setup()
    assert f"{path}, line 3: not valid JSON" in _one_line(err)


def test_bad_fields_name_the_file_and_line(tmp_path: Path) -> None:
    dm, _ = datamodule(tmp_path, "fever")
    path = dm.root / "test.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    cases = {
        "classification": ("NOT ENOUGH INFO", "classification 'NOT ENOUGH INFO' is not one of "
                           "fever's classes ['SUPPORTS', 'REFUTES']"),
        "evidences": ([[{"docid": records[1]["evidences"][0][0]["docid"], "start_token": 0,
                         "end_token": 10_000}]], "evidence span [0, 10000) lies outside"),
    }
    for key, (value, message) in cases.items():
        broken = [dict(r) for r in records]
        broken[1][key] = value
        path.write_text("".join(json.dumps(r) + "\n" for r in broken))
        with pytest.raises(DatasetCorruptError) as err:
            EraserDataModule(data_dir=tmp_path, task="fever").setup()
        assert f"{path}, line 2: " in _one_line(err) and message in str(err.value)


def test_a_missing_document_names_the_docid_folder_and_line(tmp_path: Path) -> None:
    dm, written = datamodule(tmp_path, "fever")
    docid = written["test"][4].docids[0]
    (dm.root / "docs" / docid).unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        dm.setup()
    message = _one_line(err)
    assert f"document {docid!r}" in message and str(dm.root / "docs") in message
    assert f"{dm.root / 'test.jsonl'}, line 5" in message


def test_a_missing_dataset_says_where_it_looked_and_how_to_fix_it(tmp_path: Path) -> None:
    dm = EraserDataModule(data_dir=tmp_path, task="esnli")
    with pytest.raises(DatasetNotFoundError) as err:
        dm.prepare_data()
    message = _one_line(err)
    assert str(tmp_path / "eraser" / "esnli") in message and "SGT_DATA_DIR" in message
    (tmp_path / "eraser" / "esnli").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (tmp_path / "eraser" / "esnli" / f"{split}.jsonl").write_text("")
    with pytest.raises(DatasetNotFoundError, match="neither .*docs/ nor .*docs.jsonl"):
        dm.prepare_data()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(SettingError, match=r"dataset.task must be one of \['movies', 'fever', "
                                           r"'esnli'\], got 'imdb'"):
        EraserDataModule(task="imdb")
    with pytest.raises(SettingError, match="dataset.max_length"):
        EraserDataModule(max_length=1)
    with pytest.raises(SettingError, match="dataset.min_freq"):
        EraserDataModule(min_freq=0)


@pytest.mark.skipif(not (MOVIES / "train.jsonl").is_file(),
                    reason=f"ERASER movies not found under {MOVIES}")
def test_real_movies_load_with_rationales_mapped(cache_dir: Path) -> None:
    dm = EraserDataModule(data_dir=SHARED_DATA, task="movies", cache_dir=cache_dir)
    dm.setup()
    sizes = {k: len(v[1]) for k, v in dm.splits.items()}
    assert sizes == {"train": 1600, "val": 200, "test": 199}
    assert dm.splits["test"][0].shape == (199, 1024) and dm.classes == ("NEG", "POS")
    assert dm.splits["train"][1].bincount().tolist() == [800, 800]
    meta = dm.eraser_split("test")
    with (MOVIES / "test.jsonl").open() as f:
        first = json.loads(f.readline())
    assert meta.annotation_ids[0] == first["annotation_id"] == "negR_900.txt"
    tokens = dm.decode(dm.splits["test"][0][0])
    for group in first["evidences"]:
        for ev in group:
            if ev["end_token"] <= 1024:
                span = tokens[ev["start_token"]: ev["end_token"]]
                assert [t if t != "[UNK]" else w for t, w in zip(
                    span, ev["text"].split(), strict=True)] == ev["text"].split()
                assert dm.splits["test"][2][0, ev["start_token"]: ev["end_token"]].all()
    # rationale = the union of the spans within 1024 tokens, nothing else
    assert int(dm.splits["test"][2][0].sum()) == len({
        t for g in first["evidences"] for ev in g
        for t in range(ev["start_token"], min(ev["end_token"], 1024))})
    assert all(meta.doc_lengths[i, 0] >= meta.doc_kept[i, 0] for i in range(len(meta)))
