"""Token-importance references of Jain & Wallace (issue 3): LeaveOneOut, GradientImportance, integrated gradients.

Every check compares with an independent computation: a plain loop that deletes / replaces a token and reruns the
model, a hand-written autograd gradient (``inputs_embeds`` or a model written here), Captum's
``LayerIntegratedGradients`` called directly.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnfaith import GradientImportance, LeaveOneOut, integrated_gradients
from attnfaith.attr import EmbeddingIntegratedGradients, ig_baseline
from attnfaith.nn import AttentionSoftmax
from attnfaith.testing import tiny_batch, tiny_model

SPECIALS = torch.tensor([0, 1, 2, 3])  # zoo: pad, cls/bos, sep/eos, mask


def _items(batch) -> torch.Tensor:
    return batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], SPECIALS)


def _tvd(p, q):
    return 0.5 * (p - q).abs().sum(-1)


@pytest.fixture(scope="module")
def bert():
    model = tiny_model("bert")
    return model, tiny_batch("bert", model, batch_size=3, seq_len=9)


class TinyAttentionClassifier(nn.Module):
    """A JW-style classifier written here: embedding -> tanh projection -> additive attention (AttentionSoftmax)
    -> context -> Linear. ``detach_attention`` makes the hand-written reference of JW's detached gradient."""

    pad_token_id = 0
    special_token_ids = (0, 2, 3)

    def __init__(self, vocab=30, dim=12, labels=2, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.proj = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1, bias=False)
        self.softmax = AttentionSoftmax()
        self.out = nn.Linear(dim, labels)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.8)
        self.detach_attention = False

    def get_input_embeddings(self):
        return self.embedding

    def forward(self, input_ids, attention_mask=None, inputs_embeds=None):
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        e = self.embedding(input_ids) if inputs_embeds is None else inputs_embeds
        h = torch.tanh(self.proj(e))
        allowed = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(self.special_token_ids))
        alpha = self.softmax(self.score(h).squeeze(-1), allowed)
        if self.detach_attention:
            alpha = alpha.detach()
        return self.out((alpha.unsqueeze(-1) * h).sum(1))


def _custom_batch():
    ids = torch.tensor([[2, 5, 9, 11, 7, 3, 0, 0], [2, 14, 6, 3, 0, 0, 0, 0], [2, 8, 8, 20, 21, 22, 17, 3]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


# ----------------------------------------------------------------------------------------------- leave one out
def _loo_loop(model, batch, items, mode="delete", replacement=None):
    """Plain loop: for each example and item, delete (or replace) the token on the unpadded row and rerun."""
    B, T = batch["input_ids"].shape
    out = torch.zeros(B, T)
    with torch.no_grad():
        for b in range(B):
            real = batch["attention_mask"][b].bool()
            ids = batch["input_ids"][b][real]
            pos = torch.nonzero(real).squeeze(-1)

            def probs(x):
                logits = model(input_ids=x[None], attention_mask=torch.ones_like(x)[None])
                logits = getattr(logits, "logits", logits)
                return torch.softmax(logits, -1)[0]

            full = probs(ids)
            for j, t in enumerate(pos.tolist()):
                if not items[b, t]:
                    continue
                if mode == "delete":
                    x = torch.cat([ids[:j], ids[j + 1:]])
                else:
                    x = ids.clone()
                    x[j] = replacement
                out[b, t] = _tvd(full, probs(x))
    return out


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_loo_delete_equals_plain_loop(arch):
    model = tiny_model(arch)
    batch = tiny_batch(arch, model, batch_size=3, seq_len=9)
    items = _items(batch)
    expected = _loo_loop(model, batch, items)
    for chunk in (1, 5, 64):
        got = LeaveOneOut(model, max_examples_per_batch=chunk).attribute(batch)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert (got[~items] == 0).all() and (got[items] > 0).all()
    ref = LeaveOneOut(model, batched=False).attribute(batch)
    torch.testing.assert_close(ref, expected, atol=1e-5, rtol=0)


def test_loo_mask_mode_and_replacement_id(bert):
    model, batch = bert
    items = _items(batch)
    # default: the config's mask token (zoo: 3)
    torch.testing.assert_close(LeaveOneOut(model, mode="mask").attribute(batch),
                               _loo_loop(model, batch, items, "mask", 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(LeaveOneOut(model, mode="mask", replacement_id=42, max_examples_per_batch=4)
                               .attribute(batch), _loo_loop(model, batch, items, "mask", 42), atol=1e-5, rtol=0)


def test_loo_custom_model_and_explicit_mask():
    model = TinyAttentionClassifier()
    batch = _custom_batch()
    items = _items(batch) & ~torch.isin(batch["input_ids"], torch.tensor([2, 3]))
    torch.testing.assert_close(LeaveOneOut(model).attribute(batch), _loo_loop(model, batch, items),
                               atol=1e-5, rtol=0)
    # the caller's mask chooses the scored positions (here: only position 1 of every row)
    only = torch.zeros_like(items)
    only[:, 1] = True
    got = LeaveOneOut(model).attribute(batch, mask=only)
    assert (got[:, 2:] == 0).all() and (got[:, 0] == 0).all() and (got[:, 1] > 0).all()


# ------------------------------------------------------------------------------------------------- gradient
def _manual_gradient(model, embed, batch, target=None, detach=False):
    ids, mask = batch["input_ids"], batch["attention_mask"]
    e = embed(ids).detach().requires_grad_(True)
    if isinstance(model, TinyAttentionClassifier):
        model.detach_attention = detach
        logits = model(ids, mask, inputs_embeds=e)
        model.detach_attention = False
    else:
        logits = model(inputs_embeds=e, attention_mask=mask).logits
    if logits.shape[-1] == 1:
        p1 = torch.sigmoid(logits[:, 0])
        probs = torch.stack([1 - p1, p1], -1)
    else:
        probs = torch.softmax(logits, -1)
    t = probs.argmax(-1) if target is None else torch.as_tensor(target).expand(ids.shape[0])
    (g,) = torch.autograd.grad(probs.gather(1, t[:, None]).sum(), e)
    return ((g * e).sum(-1).abs() * mask).detach()


@pytest.mark.parametrize("labels", [3, 1])
def test_gradient_importance_equals_hand_written_autograd(labels):
    model = tiny_model("bert", num_labels=labels)
    batch = tiny_batch("bert", model, batch_size=3, seq_len=9)
    embed = model.bert.embeddings.word_embeddings
    torch.testing.assert_close(GradientImportance(model).attribute(batch), _manual_gradient(model, embed, batch),
                               atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(GradientImportance(model).attribute(batch, target=0),
                               _manual_gradient(model, embed, batch, target=0), atol=1e-6, rtol=1e-5)


def test_gradient_importance_detached_attention_custom_model():
    model = TinyAttentionClassifier()
    batch = _custom_batch()
    full = _manual_gradient(model, model.embedding, batch)
    detached = _manual_gradient(model, model.embedding, batch, detach=True)
    assert not torch.allclose(full, detached)
    torch.testing.assert_close(GradientImportance(model).attribute(batch), full, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(GradientImportance(model, detach_attention=True).attribute(batch), detached,
                               atol=1e-6, rtol=1e-5)


def test_gradient_importance_hf_detach_differs_and_encoder_decoder_runs():
    model = tiny_model("bert")
    batch = tiny_batch("bert", model)
    a = GradientImportance(model).attribute(batch)
    b = GradientImportance(model, detach_attention=True).attribute(batch)
    assert a.shape == b.shape == batch["input_ids"].shape and not torch.allclose(a, b)
    t5 = tiny_model("t5")
    tb = tiny_batch("t5", t5)
    g = GradientImportance(t5).attribute(tb)
    assert g.shape == tb["input_ids"].shape and (g[tb["attention_mask"].bool()] > 0).any()
    assert (g[tb["attention_mask"] == 0] == 0).all()


# -------------------------------------------------------------------------------------------- integrated gradients
def test_integrated_gradients_equals_captum_directly(bert):
    from captum.attr import LayerIntegratedGradients

    model, batch = bert
    ids, mask = batch["input_ids"], batch["attention_mask"]
    baseline = torch.where(_items(batch), torch.zeros_like(ids), ids)
    torch.testing.assert_close(ig_baseline(model, batch), baseline, atol=0, rtol=0)

    def forward(x, m):
        return torch.softmax(model(input_ids=x, attention_mask=m).logits, -1)

    target = forward(ids, mask).argmax(-1)
    lig = LayerIntegratedGradients(forward, model.bert.embeddings.word_embeddings)
    expected = lig.attribute(ids, baselines=baseline, target=target, additional_forward_args=(mask,),
                             n_steps=16).sum(-1).detach()
    ig = integrated_gradients(model, n_steps=16)
    assert isinstance(ig, EmbeddingIntegratedGradients)
    got = ig.attribute(ids, additional_forward_args=(mask,))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # special tokens and padding keep their ids in the baseline: attribution exactly 0 there
    assert (got[~_items(batch)] == 0).all()
    # HF-style inputs and an internal batch size give the same
    got2 = integrated_gradients(model, n_steps=16, internal_batch_size=7).attribute(batch)
    torch.testing.assert_close(got2, expected, atol=1e-5, rtol=1e-4)


def test_model_left_as_found_by_references(bert):
    model, batch = bert
    model.train()
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for attr in (GradientImportance(model), GradientImportance(model, detach_attention=True), LeaveOneOut(model),
                     integrated_gradients(model, n_steps=4)):
            attr.attribute(batch)
            assert model.training and all(m.training for m in model.modules())
            assert all(p.requires_grad == f for p, f in flags)
            assert all(p.grad is None for p in model.parameters())
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert not model.bert.embeddings.word_embeddings._forward_hooks
    finally:
        model.eval()
        model.bert.embeddings.word_embeddings.weight.requires_grad_(True)


def test_reference_argument_errors(bert):
    model, _ = bert
    with pytest.raises(ValueError, match="mode"):
        LeaveOneOut(model, mode="drop")
    with pytest.raises(ValueError, match="replacement_id"):
        LeaveOneOut(model, replacement_id=5)
    with pytest.raises(ValueError, match="max_examples_per_batch"):
        LeaveOneOut(model, max_examples_per_batch=0)
    with pytest.raises(ValueError, match="n_steps"):
        integrated_gradients(model, n_steps=0)
    with pytest.raises(TypeError, match="detach_attention"):
        GradientImportance(model, detach_attention="yes")
