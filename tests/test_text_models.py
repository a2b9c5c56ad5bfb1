"""Text classifiers, the text feature (token embeddings) and SGT on the planted-word corpus."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from sgt.errors import ModelError, SettingError
from sgt.features import TextModality
from sgt.masking import get_fill, mask_features
from sgt.models import BiLSTM, TextTransformer
from sgt.module import SaliencyGuidedModule
from sgt.saliency import Explainer, ModalityForward
from tests.eraser_corpus import PLANTED, datamodule, single_thread, trained_bilstm

MODELS = {
    "bilstm": partial(BiLSTM, embedding_dim=8, hidden_size=6),
    "transformer": partial(TextTransformer, embedding_dim=8, num_heads=2, feedforward_dim=16,
                           max_length=16),
}
IDS = torch.tensor([[3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 10, 11], [12, 3, 0, 0, 0, 0]])


@pytest.mark.parametrize("name", MODELS)
def test_padding_changes_nothing_and_gets_no_gradient(name: str) -> None:
    torch.manual_seed(0)
    net = MODELS[name](num_classes=3, vocab_size=20).eval()
    longer = torch.cat([IDS, torch.zeros(3, 4, dtype=torch.long)], 1)
    assert torch.allclose(net(IDS), net(longer), atol=1e-5)
    z = net.embed(longer).detach().requires_grad_(True)
    logits = net.classify(z, longer != 0)
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), z)  # eval mode, as SGT and evaluation
    assert not grad[longer == 0].any()
    assert (grad[longer != 0].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("name", MODELS)
def test_an_empty_row_gives_finite_logits(name: str) -> None:
    net = MODELS[name](num_classes=2, vocab_size=20).eval()
    ids = torch.tensor([[0, 0, 0], [4, 5, 0]])
    logits = net(ids)
    assert torch.isfinite(logits).all()
    z = net.embed(ids).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(net.classify(z, ids != 0).sum(), z)
    assert torch.isfinite(grad).all() and not grad[0].any()


def test_transformer_refuses_inputs_longer_than_its_positions() -> None:
    net = MODELS["transformer"](num_classes=2, vocab_size=20)
    with pytest.raises(SettingError, match="17 tokens exceed model.max_length=16"):
        net(torch.ones(1, 17, dtype=torch.long))


def test_every_activation_is_its_own_module() -> None:
    for name, make in MODELS.items():
        net = make(num_classes=2, vocab_size=20)
        activations = [m for m in net.modules() if isinstance(m, (nn.ReLU, nn.GELU))]
        assert activations and len({id(m) for m in activations}) == len(activations), name


def test_text_features_exclude_padding_separators_and_the_query() -> None:
    # claim 7 8 [SEP] document 9 10 11 [PAD]; a pair 4 5 [SEP] 6 [PAD] without query
    ids = torch.tensor([[7, 8, 2, 9, 10, 11, 0], [4, 5, 2, 6, 0, 0, 0]])
    assert TextModality().valid_features(ids).tolist() == (ids != 0).tolist()  # the default
    pair = TextModality(pad_id=0, sep_id=2).valid_features(ids)
    assert pair[1].tolist() == [True, True, False, True, False, False, False]
    claim = TextModality(pad_id=0, sep_id=2, has_query=True)
    valid = claim.valid_features(ids)
    assert valid.tolist() == [[False, False, False, True, True, True, False],
                              [False, False, False, True, False, False, False]]
    assert torch.equal(claim.read_positions(valid), ids != 0)  # the model reads the claim
    net = MODELS["bilstm"](num_classes=2, vocab_size=20).eval()
    claim_only = torch.tensor([[7, 8, 2, 0, 0, 0, 0]])  # every document token deleted
    assert not claim.valid_features(claim_only).any()
    assert torch.allclose(claim.logits(net, claim_only), net(claim_only))
    assert not torch.allclose(claim.logits(net, claim_only), net(torch.zeros_like(claim_only)))
    with pytest.raises(SettingError, match="needs the sep_id"):
        TextModality(has_query=True)


def test_masked_tokens_take_the_fill_values_and_padding_is_the_zero_embedding() -> None:
    net = MODELS["bilstm"](num_classes=2, vocab_size=20)
    pad = net.embed(torch.zeros(1, 1, dtype=torch.long))
    assert not pad.any()  # nn.Embedding(padding_idx=0): the padding embedding is 0
    text = TextModality()
    valid = text.valid_features(IDS)
    z = torch.rand(3, 6, 8) + 4.0  # every real token's values in [4, 5)
    z[~valid] = 0.0  # padding
    saliency = torch.arange(6.0).expand(3, 6)
    constant, selected = mask_features(z, saliency, 0.5, get_fill("constant", {"value": 0.0}),
                                       valid=valid)
    assert torch.equal(constant[selected], pad[0].expand(int(selected.sum()), 8))
    g = torch.Generator().manual_seed(0)
    uniform, selected = mask_features(z, saliency, 0.5, get_fill("uniform"), valid=valid,
                                      generator=g)
    assert selected.sum(1).tolist() == [1, 3, 1] and not selected[~valid].any()
    lo = torch.where(valid[..., None], z, float("inf")).amin(1, keepdim=True)
    hi = torch.where(valid[..., None], z, float("-inf")).amax(1, keepdim=True)
    inside = (uniform >= lo) & (uniform <= hi)  # per sample and dimension, padding not in range
    assert inside[selected].all() and (uniform[selected] > 3.9).all()


def _glove(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "vectors.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


VOCAB = ["[PAD]", "[UNK]", "[SEP]", "the", "film", "zzz"]


@pytest.mark.parametrize("name", MODELS)
def test_glove_vectors_fill_the_vocabulary_rows(tmp_path: Path, name: str) -> None:
    path = _glove(tmp_path, ["the 0.5 -1 2 0 0 0 0 0.25", "other 9 9 9 9 9 9 9 9",
                             "film 1 2 3 4 5 6 7 8"])
    torch.manual_seed(0)
    net = MODELS[name](num_classes=2, vocab_size=6, vocabulary=VOCAB, embeddings_path=path,
                       freeze_embeddings=True)
    weight = net.embedding.weight
    assert torch.equal(weight[3], torch.tensor([0.5, -1, 2, 0, 0, 0, 0, 0.25]))
    assert torch.equal(weight[4], torch.arange(1.0, 9.0))
    assert not weight[0].any() and weight[5].abs().sum() > 0  # padding 0, unknown word random
    assert not weight.requires_grad


def test_bad_glove_files_are_named(tmp_path: Path) -> None:
    make = partial(BiLSTM, num_classes=2, vocab_size=6, vocabulary=VOCAB, embedding_dim=4)
    with pytest.raises(ModelError, match="model.embeddings_path .*missing.txt does not exist"):
        make(embeddings_path=tmp_path / "missing.txt")
    path = _glove(tmp_path, ["the 1 2 3", "film 1 2 3"])
    with pytest.raises(ModelError, match=r"holds 3-dimensional vectors \(line 1\) but "
                                         "model.embedding_dim is 4"):
        make(embeddings_path=path)
    path = _glove(tmp_path, ["the 1 2 3 4", "film 1 x 3 4"])
    with pytest.raises(ModelError, match=r"vectors.txt, line 2: expected the word 'film' and 4"):
        make(embeddings_path=path)
    path = _glove(tmp_path, ["cat 1 2 3 4"])
    with pytest.raises(ModelError, match="none of the 6 vocabulary words"):
        make(embeddings_path=path)
    with pytest.raises(SettingError, match="needs the 6 vocabulary words"):
        make(embeddings_path=path, vocabulary=None)


def test_the_modality_path_reads_the_claim_it_never_ranks(tmp_path: Path) -> None:
    dm, _ = datamodule(tmp_path, "fever")
    dm.setup()
    torch.manual_seed(0)
    net = BiLSTM(**dm.model_kwargs(), embedding_dim=8, hidden_size=8).eval()
    ids = dm.splits["test"][0]
    text = TextModality(**dm.modality_kwargs())
    via_modality = text.classify(net, text.embed(net, ids), text.valid_features(ids))
    assert torch.allclose(via_modality, net(ids), atol=1e-6)


def test_grad_ranks_the_planted_word_first(tmp_path_factory: pytest.TempPathFactory) -> None:
    net, dm, written = trained_bilstm(str(tmp_path_factory.getbasetemp() / "planted"))
    x, y, *_ = dm.splits["test"]
    has_word = torch.tensor([inst.planted is not None for inst in written["test"]])
    assert (net(x).argmax(1) == y)[has_word].float().mean() >= 0.9
    text = TextModality(**dm.modality_kwargs())
    _, scores = Explainer(ModalityForward(net, text), ["grad"])("grad", x, y)
    top = scores.masked_fill(~text.valid_features(x), -1.0).argmax(1)
    planted = torch.tensor([len(inst.query) + 1 + inst.planted[1] if inst.planted else -1
                            for inst in written["test"]])
    assert all(dm.decode(x[i])[planted[i]] in PLANTED["fever"] for i in range(len(x))
               if has_word[i])
    assert (top == planted)[has_word].float().mean() >= 0.75


class RecordingFill:
    """The uniform fill, remembering which tokens each SGT step selected."""

    def __init__(self) -> None:
        self.uniform = get_fill("uniform")
        self.calls: list[tuple[Tensor, Tensor]] = []

    def __call__(self, features, *, selected, valid, generator, grid):
        self.calls.append((selected.clone(), valid.clone()))
        return self.uniform(features, selected=selected, valid=valid, generator=generator,
                            grid=grid)


def test_sgt_trains_on_text_and_never_masks_padding_claim_or_separator(tmp_path: Path) -> None:
    dm, written = datamodule(tmp_path, "fever")
    torch.manual_seed(0)
    net = BiLSTM(**dm.model_kwargs(), embedding_dim=8, hidden_size=8)
    fill = RecordingFill()
    module = SaliencyGuidedModule(net, optimizer=partial(torch.optim.Adam, lr=1e-2),
                                  num_classes=2, k=0.5, fill=fill,
                                  modality=TextModality(**dm.modality_kwargs()))
    trainer = pl.Trainer(accelerator="cpu", max_steps=6, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    with single_thread():
        trainer.fit(module, datamodule=dm)
    assert len(fill.calls) >= 6
    for selected, valid in fill.calls:
        assert not (selected & ~valid).any()  # never padding, claim or [SEP]
        assert selected.sum(1).tolist() == (valid.sum(1) // 2).tolist()  # int(0.5 · n)
    # the valid tokens are exactly the document tokens
    ids = dm.splits["train"][0]
    valid = TextModality(**dm.modality_kwargs()).valid_features(ids)
    starts = torch.tensor([len(inst.query) + 1 for inst in written["train"]])
    lengths = torch.tensor([len(inst.docs[inst.docids[0]]) for inst in written["train"]])
    positions = torch.arange(ids.shape[1])
    want = (positions >= starts[:, None]) & (positions < (starts + lengths)[:, None])
    assert torch.equal(valid, want)
    assert torch.isfinite(trainer.callback_metrics["train/loss_step"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_eval_mode_embedding_gradients_work_with_cudnn_on_the_gpu() -> None:
    torch.manual_seed(0)
    net = BiLSTM(num_classes=2, vocab_size=50, embedding_dim=16, hidden_size=16)
    ids = torch.randint(3, 50, (8, 30))
    ids[:4, 20:] = 0
    cpu_grad = None
    for device in ("cpu", "cuda"):
        model = net.to(device).eval()
        x = ids.to(device)
        z = model.embed(x).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.classify(z, x != 0)[:, 0].sum(), z)
        if cpu_grad is None:
            cpu_grad = grad
        else:
            assert torch.allclose(grad.cpu(), cpu_grad, atol=1e-5)
    # training mode (cuDNN) still trains, and SGT's eval-mode saliency runs inside it
    module = SaliencyGuidedModule(net.cuda().train(), num_classes=2, k=0.5,
                                  modality=TextModality())
    out = module.sgt_forward(ids.cuda(), torch.randint(0, 2, (8,)).cuda())
    out.objective.loss.backward()
    assert torch.isfinite(out.objective.loss)
