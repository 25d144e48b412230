"""Attention attributions (raw attention, rollout, attention gradient, gradient × attention) against independent
references: eager ``output_attentions``, a plain-Python rollout and float64 finite differences."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from attnfaith import (
    AttentionAttribution,
    AttentionGradient,
    AttentionRollout,
    AttentionSoftmax,
    AttentionTap,
    AttentionXGradient,
)
from attnfaith.testing import ARCHITECTURES, DECODER_ARCHITECTURES, tiny_batch, tiny_model, to_float64

ARCHS = list(ARCHITECTURES)
ALL_METHODS = (AttentionAttribution, AttentionRollout, AttentionGradient, AttentionXGradient)


def generation_positions(model, batch) -> dict:
    """GPT-2 (learned absolute positions) on a left-padded batch: the position ids transformers' generation passes
    (``cumsum(mask) - 1``, padding at 1), so each row reads as if it were unpadded. Other models: none."""
    if model.config.model_type != "gpt2":
        return {}
    mask = batch["attention_mask"]
    return {"position_ids": (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)}


def eager_out(model, batch):
    with torch.no_grad():
        return model(**batch, **generation_positions(model, batch), output_attentions=True)


def last_layer_attention(out):
    """Eager attention of the tap's last layer: the last decoder cross-attention for encoder-decoders."""
    cross = getattr(out, "cross_attentions", None)
    return cross[-1] if cross is not None else out.attentions[-1]


def first_real(mask):
    return [int(row.nonzero()[0]) for row in mask]


# ------------------------------------------------------------------------------------------ AttentionAttribution


@pytest.mark.parametrize("arch", ARCHS)
def test_attention_attribution_equals_eager_last_layer_cls_row(arch):
    model = tiny_model(arch)
    batch = tiny_batch(arch, model)
    att = last_layer_attention(eager_out(model, batch))  # [B, H, Tq, Tk]
    mask = batch["attention_mask"]
    scores = AttentionAttribution(model, layer=-1, heads="mean", query="cls").attribute(
        batch["input_ids"], additional_forward_args=(mask,)
    )
    assert scores.shape == mask.shape and scores.dtype == torch.float32
    # query "cls": the first real token (position 0 with right padding, the first non-pad with left padding)
    rows = first_real(mask) if arch in DECODER_ARCHITECTURES else [0] * mask.shape[0]
    expected = torch.stack([att[b, :, q].mean(0) for b, q in enumerate(rows)]) * mask
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-6)
    if arch not in DECODER_ARCHITECTURES:  # the statement: row 0 of every example
        torch.testing.assert_close(scores, att[:, :, 0].mean(1) * mask, rtol=0, atol=1e-6)
    assert (scores[mask == 0] == 0).all()


def test_attention_attribution_options_and_input_conventions():
    from transformers import BatchEncoding

    model = tiny_model("bert", num_layers=3)
    batch = tiny_batch("bert", model)
    out = eager_out(model, batch)
    mask = batch["attention_mask"]
    ids = batch["input_ids"]
    a1 = out.attentions[1]
    cases = [
        (("max", "cls", 1), a1[:, :, 0].max(1).values),
        ((2, "cls", 1), a1[:, 2, 0]),
        (([0, 3], 4, 1), a1[:, [0, 3], 4].mean(1)),
        (("mean", "mean", 1), torch.stack([a1[b, :, : int(mask[b].sum())].mean(0).mean(0) for b in range(3)])),
        (("mean", "last", -3), torch.stack([out.attentions[0][b, :, int(mask[b].sum()) - 1].mean(0) for b in range(3)])),
    ]
    for (heads, query, layer), ref in cases:
        got = AttentionAttribution(model, layer=layer, heads=heads, query=query).attribute(ids, None, (mask,))
        torch.testing.assert_close(got, ref * mask, rtol=0, atol=1e-6, msg=str((heads, query, layer)))
    # the three input conventions agree: ids + mask, a plain mapping, a BatchEncoding
    attr = AttentionAttribution(model)
    a = attr.attribute(ids, additional_forward_args=mask)
    b = attr.attribute({"input_ids": ids, "attention_mask": mask})
    c = attr.attribute(BatchEncoding({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}))
    assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "t5"])
def test_ids_plus_mask_in_additional_forward_args(arch):
    """GPT-2's forward is (input_ids, past_key_values, attention_mask, ...): the mask must still be the mask."""
    model = tiny_model(arch)
    batch = tiny_batch(arch, model)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    for cls in (AttentionAttribution, AttentionRollout, AttentionGradient):
        attr = cls(model, query="last")
        a = attr.attribute(ids, additional_forward_args=(mask,))
        b = attr.attribute(dict(batch))
        assert torch.equal(a, b), cls.__name__
        assert (a[mask == 0] == 0).all()


# ------------------------------------------------------------------------------------------------------ rollout


def python_rollout(atts, mask, fusion="mean"):
    """Abnar & Zuidema's rollout with nested loops over plain Python floats: for each layer, A = fuse(heads) + I,
    rows renormalised; R = A_L ... A_1 as explicit sums of products; returns R[0] (the [CLS] row) per example."""
    B, H, T, _ = atts[0].shape
    result = []
    for b in range(B):
        R = [[1.0 if i == j else 0.0 for j in range(T)] for i in range(T)]
        for att in atts:
            a = att[b].double().tolist()
            A = []
            for i in range(T):
                row = []
                for j in range(T):
                    vals = [a[h][i][j] for h in range(H)]
                    v = sum(vals) / H if fusion == "mean" else (max(vals) if fusion == "max" else min(vals))
                    row.append(v + (1.0 if i == j else 0.0))
                s = sum(row)
                A.append([v / s for v in row])
            # R <- A @ R
            R = [[sum(A[i][k] * R[k][j] for k in range(T)) for j in range(T)] for i in range(T)]
        result.append([R[0][j] * float(mask[b, j]) for j in range(T)])
    return torch.tensor(result)


@pytest.mark.parametrize("arch,fusion", [("bert", "mean"), ("bert", "max"), ("distilbert", "min"), ("t5", "mean")])
def test_rollout_equals_plain_python_reference(arch, fusion):
    model = tiny_model(arch, num_layers=3)
    batch = tiny_batch(arch, model, seq_len=8)
    out = eager_out(model, batch)
    atts = out.encoder_attentions if arch == "t5" else out.attentions  # encoder-decoders: encoder layers only
    assert len(atts) == 3
    expected = python_rollout(atts, batch["attention_mask"], fusion)
    got = AttentionRollout(model, head_fusion=fusion).attribute(batch["input_ids"], None, (batch["attention_mask"],))
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(3), atol=1e-5)  # rollout rows stay distributions


def test_rollout_decoder_uses_last_real_row():
    model = tiny_model("gpt2", num_layers=3)
    batch = tiny_batch("gpt2", model, seq_len=7)
    out = eager_out(model, batch)
    mask = batch["attention_mask"]
    # reference with explicit matrix products in float64, the last row (the classified token)
    T = mask.shape[1]
    R = torch.eye(T, dtype=torch.float64).expand(3, T, T)
    for att in out.attentions:
        A = att.double().mean(1) + torch.eye(T, dtype=torch.float64)
        A = A / A.sum(-1, keepdim=True)
        R = torch.bmm(A, R)
    expected = R[:, -1] * mask
    got = AttentionRollout(model, query="last").attribute(dict(batch))
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------------- gradients against finite differences



@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama", "deberta-v2"])
def test_attention_gradient_matches_finite_difference(arch):
    model = to_float64(tiny_model(arch))
    batch = tiny_batch(arch, model)
    mask = batch["attention_mask"]
    B, T = mask.shape
    layer, head = 0, 1
    query = T - 1 if arch in DECODER_ARCHITECTURES else 2  # a real query in every row
    grad = AttentionGradient(model, layer=layer, heads=head, query=query).attribute(batch["input_ids"], None, (mask,))
    assert grad.shape == (B, T)
    eps = 1e-6
    checked = 0
    with torch.no_grad(), AttentionTap(model) as tap:
        # target=None explains the predicted class. (Not from an eager forward: transformers' eager llama in float64
        # casts the float64-min mask into a float32 softmax, so fully masked left-padding rows give NaN logits.)
        target = model(**batch, **generation_positions(model, batch)).logits.argmax(-1)
        p = tap.attentions[layer]
        for b in range(B):
            keys = [k for k in range(T) if mask[b, k] and (arch not in DECODER_ARCHITECTURES or k <= query)]
            for k in keys[:: max(1, len(keys) // 3)]:
                vals = []
                for sign in (1.0, -1.0):
                    value = p.clone()
                    value[b, head, query, k] += sign * eps
                    iv = tap.intervene("replace", value, layers=layer)
                    logits = model(**batch, **generation_positions(model, batch)).logits
                    vals.append(torch.softmax(logits, -1)[b, target[b]].item())
                    tap.remove(iv)
                fd = (vals[0] - vals[1]) / (2 * eps)
                g = grad[b, k].item()
                assert abs(fd - g) / max(abs(g), 1e-3) < 1e-3, (b, k, fd, g)
                checked += 1
    assert checked >= 6
    assert grad.abs().max() > 1e-3


@pytest.mark.parametrize("arch", ["bert", "llama", "deberta-v2"])
def test_x_gradient_is_attention_times_gradient_and_target(arch):
    model = tiny_model(arch)
    batch = tiny_batch(arch, model)
    mask = batch["attention_mask"]
    query = "last" if arch in DECODER_ARCHITECTURES else "cls"
    ids = batch["input_ids"]
    # hand reference: full [B, H, T, T] gradient of the predicted-class probability w.r.t. the last layer's weights
    with AttentionTap(model, keep_grad=True) as tap:
        logits = model(**batch).logits
        target = logits.argmax(-1)
        att = tap.attentions[-1]
        (g,) = torch.autograd.grad(torch.softmax(logits, -1).gather(1, target[:, None]).sum(), att)
    rows = [int(m.nonzero()[-1]) for m in mask] if query == "last" else [0] * 3
    ref_g = torch.stack([g[b, :, q].mean(0) for b, q in enumerate(rows)]) * mask
    ref_xg = torch.stack([(g * att.detach())[b, :, q].mean(0) for b, q in enumerate(rows)]) * mask
    with torch.no_grad():  # works inside a caller's no_grad block too
        got_g = AttentionGradient(model, query=query).attribute(ids, None, (mask,))
    got_xg = AttentionXGradient(model, query=query).attribute(ids, None, (mask,))
    torch.testing.assert_close(got_g, ref_g, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got_xg, ref_xg, rtol=1e-5, atol=1e-7)
    assert AttentionXGradient.multiplies_by_inputs and not AttentionGradient.multiplies_by_inputs
    # target=None is the predicted class; another class gives another answer
    explicit = AttentionGradient(model, query=query).attribute(ids, target.tolist(), (mask,))
    torch.testing.assert_close(explicit, got_g, rtol=0, atol=0)
    other = AttentionGradient(model, query=query).attribute(ids, (target + 1) % 3, (mask,))
    assert not torch.allclose(other, got_g)


# --------------------------------------------------------------------------------------------- model left as found


@pytest.mark.parametrize("method", ALL_METHODS)
def test_attributions_leave_mode_and_requires_grad_untouched(method):
    model = tiny_model("bert", hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    model.train()
    model.classifier.eval()  # mixed flags must come back as they were
    frozen = {n for i, (n, _) in enumerate(model.named_parameters()) if i % 3 == 0}
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)
    flags = [(n, m.training) for n, m in model.named_modules()]
    grads = [(n, p.requires_grad) for n, p in model.named_parameters()]
    impl = model.config._attn_implementation
    batch = tiny_batch("bert", model)
    a = method(model).attribute(dict(batch))
    b = method(model).attribute(dict(batch))
    assert torch.equal(a, b), "eval mode inside: no dropout, deterministic"
    assert [(n, m.training) for n, m in model.named_modules()] == flags
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == grads
    assert model.config._attn_implementation == impl
    assert all(p.grad is None for p in model.parameters())
    # also when the attribution raises
    with pytest.raises(ValueError):
        method(model).attribute(batch["input_ids"], None, (batch["attention_mask"][:, :5],))
    assert [(n, m.training) for n, m in model.named_modules()] == flags
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == grads


# ----------------------------------------------------------------------------------------------- errors and edges


class _NoAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask=None):
        return self.out(self.emb(input_ids).mean(1))


def test_bad_input_raises_naming_the_argument():
    model = tiny_model("bert")
    batch = tiny_batch("bert", model)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with pytest.raises(ValueError, match="layer"):
        AttentionAttribution(model, layer=2).attribute(ids, None, (mask,))
    with pytest.raises(ValueError, match="layer"):
        AttentionAttribution(model, layer=-3).attribute(ids, None, (mask,))
    with pytest.raises(ValueError, match="layer"):
        AttentionGradient(model, layer=7).attribute(ids, None, (mask,))
    with pytest.raises(TypeError, match="layer"):
        AttentionAttribution(model, layer="last")
    with pytest.raises(ValueError, match="heads"):
        AttentionAttribution(model, heads="median")
    with pytest.raises(ValueError, match="heads"):
        AttentionAttribution(model, heads=9).attribute(ids, None, (mask,))
    with pytest.raises(ValueError, match="query"):
        AttentionAttribution(model, query="first")
    with pytest.raises(ValueError, match="query"):
        AttentionGradient(model, query="sep")
    with pytest.raises(ValueError, match="query"):
        AttentionAttribution(model, query=40).attribute(ids, None, (mask,))
    with pytest.raises(ValueError, match="head_fusion"):
        AttentionRollout(model, head_fusion="median")
    with pytest.raises(ValueError, match="query"):
        AttentionRollout(model, query="everything")
    for cls in ALL_METHODS:
        with pytest.raises(ValueError, match="attention_mask"):  # shape does not match the ids
            cls(model).attribute(ids, None, (mask[:, :-1],))
        with pytest.raises(TypeError, match="inputs"):  # embeddings instead of ids
            cls(model).attribute(ids.float(), None, (mask,))
        with pytest.raises(ValueError, match="model"):  # nothing the tap can reach
            cls(_NoAttention()).attribute(ids, None, (mask,))
        with pytest.raises(TypeError, match="model"):
            cls("bert")
    with pytest.raises(ValueError, match="target"):
        AttentionGradient(model).attribute(ids, [0, 1], (mask,))


@pytest.mark.parametrize("arch", ["bert", "gpt2", "deberta-v2"])
def test_no_nan_from_a_fully_padded_row(arch):
    model = tiny_model(arch)
    batch = tiny_batch(arch, model)
    batch["attention_mask"][1] = 0
    batch["input_ids"][1] = 0
    for method in ALL_METHODS:
        scores = method(model).attribute(dict(batch))
        assert torch.isfinite(scores).all(), method.__name__
        assert (scores[1] == 0).all(), method.__name__


class _AdditiveAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 8)
        self.score = nn.Linear(8, 1)
        self.attn = AttentionSoftmax()
        self.out = nn.Linear(8, 2)

    def weights(self, input_ids, attention_mask):
        return self.attn(self.score(torch.tanh(self.emb(input_ids))).squeeze(-1), attention_mask.bool())

    def forward(self, input_ids, attention_mask):
        return self.out((self.weights(input_ids, attention_mask).unsqueeze(-1) * self.emb(input_ids)).sum(1))


def test_custom_single_query_attention_model():
    torch.manual_seed(0)
    model = _AdditiveAttention().eval()
    ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        ref = model.weights(ids, mask)
    got = AttentionAttribution(model).attribute(ids, None, (mask,))
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="model"):  # one query per example: no T x T self-attention to roll out
        AttentionRollout(model).attribute(ids, None, (mask,))


def test_output_probabilities_keep_float64():
    """The target probability is computed in promote_types(dtype, float32): float64 gradients stay float64-exact."""
    from attnfaith._inputs import probs_of

    logits = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    assert probs_of(logits).dtype == torch.float64
    assert probs_of(logits.half()).dtype == torch.float32
    assert probs_of(torch.tensor([0.0, 2.0], dtype=torch.float64)).shape == (2, 2)  # one logit: [1 - σ, σ]
    torch.testing.assert_close(probs_of(logits), torch.softmax(logits, -1), rtol=0, atol=1e-16)
