"""Checks of attnfaith.testing: the tiny random-weight model zoo every other test builds on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnfaith.testing import (
    ARCHITECTURES,
    DECODER_ARCHITECTURES,
    ENCODER_DECODER_ARCHITECTURES,
    FIRST_ORDINARY_ID,
    special_token_ids,
    tiny_batch,
    tiny_model,
)

ARCHS = list(ARCHITECTURES)
PROBE = "attnfaith_zoo_probe"  # a custom attention implementation registered for the duration of this module


def _attentions(out):
    """The first group of attention maps: ``attentions`` or, for encoder-decoders, ``encoder_attentions``."""
    att = getattr(out, "attentions", None)
    return att if att is not None else out.encoder_attentions


def _fresh_and_padding_changed(arch, model, batch):
    ids = batch["input_ids"].clone()
    pad = batch["attention_mask"] == 0
    assert pad.any(), "the default batch must exercise padding"
    gen = torch.Generator().manual_seed(1)
    ids[pad] = torch.randint(FIRST_ORDINARY_ID, model.config.vocab_size, (int(pad.sum()),), generator=gen)
    return {"input_ids": ids, "attention_mask": batch["attention_mask"]}


class _Probe:
    """Generic eager attention, ``softmax(q k^T * scaling + position_bias + mask) v``, that can zero one key."""

    def __init__(self):
        self.reset()

    def reset(self, target_call=None, key=None):
        self.calls = 0
        self.target_call = target_call
        self.key = key

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_bias=None, **kw):
        from transformers.integrations.sdpa_attention import repeat_kv

        groups = getattr(module, "num_key_value_groups", 1)
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        scores = query @ key.transpose(-1, -2) * (query.shape[-1] ** -0.5 if scaling is None else scaling)
        if position_bias is not None:
            scores = scores + position_bias
        if attention_mask is not None:
            scores = scores + attention_mask[..., : key.shape[-2]]
        weights = torch.softmax(scores, dim=-1)
        if self.calls == self.target_call:
            weights = weights.clone()
            weights[..., self.key] = 0.0
            weights = weights / weights.sum(-1, keepdim=True)
        self.calls += 1
        return (weights @ value).transpose(1, 2).contiguous(), weights


@pytest.fixture(scope="module")
def probe():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    fn = _Probe()
    AttentionInterface.register(PROBE, fn)
    # Without a mask function for the name, masking_utils hands the attention function mask=None (no padding!).
    AttentionMaskInterface.register(PROBE, eager_mask)
    yield fn
    AttentionInterface._global_mapping.pop(PROBE, None)
    AttentionMaskInterface._global_mapping.pop(PROBE, None)


def test_constants():
    assert len(ARCHITECTURES) == 12 and len(set(ARCHITECTURES)) == 12
    assert set(DECODER_ARCHITECTURES) == {"gpt2", "llama", "qwen2"}
    assert set(ENCODER_DECODER_ARCHITECTURES) == {"bart", "t5"}
    with pytest.raises(ValueError, match="unknown architecture"):
        tiny_model("xlnet")


@pytest.mark.parametrize("arch", ARCHS)
def test_model_is_tiny_eval_float32_without_dropout(arch):
    model = tiny_model(arch)
    cfg = model.config
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert cfg._attn_implementation == "eager"
    assert cfg.num_labels == 3
    assert cfg.vocab_size == 100
    assert sum(p.numel() for p in model.parameters()) < 100_000
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))
    assert cfg.pad_token_id == 0
    assert special_token_ids(model) == {0, 1, 2, 3}
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.cls_token_id, cfg.sep_token_id) == (1, 2, 1, 2)
    heads = {getattr(cfg, k) for k in ("num_attention_heads", "n_head", "n_heads", "num_heads") if hasattr(cfg, k)}
    assert heads == {4}
    if arch in ("llama", "qwen2"):
        assert cfg.num_key_value_heads == 2


@pytest.mark.parametrize("arch", ARCHS)
def test_seeded_and_global_rng_untouched(arch):
    state = torch.random.get_rng_state()
    a, b, c = tiny_model(arch, seed=0), tiny_model(arch, seed=0), tiny_model(arch, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    # every weight matrix is re-drawn with std 0.2 (HF's default init would give ~0.02)
    stds = [p.std().item() for n, p in a.named_parameters() if p.dim() == 2 and p.numel() >= 256]
    assert stds and min(stds) > 0.15 and max(stds) < 0.25


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_layout(arch):
    model = tiny_model(arch)
    batch = tiny_batch(arch, model)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape == (3, 10) and ids.dtype == mask.dtype == torch.long
    assert mask.sum(1).tolist() == [10, 7, 5]
    assert torch.equal(ids[mask == 0], torch.zeros_like(ids[mask == 0]))
    assert torch.equal(tiny_batch(arch, model)["input_ids"], ids)
    assert not torch.equal(tiny_batch(arch, model, seed=1)["input_ids"], ids)
    for row, n in zip(ids, mask.sum(1).tolist()):
        real = row[-n:] if arch in DECODER_ARCHITECTURES else row[:n]
        if arch in DECODER_ARCHITECTURES:
            assert mask[:, -1].all(), "left padding: the last real token is at the end"
            assert real[0] == 1 and (real[1:] >= FIRST_ORDINARY_ID).all()
        elif arch == "t5":
            assert real[-1] == 2 and (real[:-1] >= FIRST_ORDINARY_ID).all()
        else:
            assert real[0] == 1 and real[-1] == 2 and (real[1:-1] >= FIRST_ORDINARY_ID).all()
    if arch not in DECODER_ARCHITECTURES:
        assert mask[:, 0].all(), "right padding"
    if arch in ENCODER_DECODER_ARCHITECTURES:
        assert (ids == model.config.eos_token_id).sum(1).tolist() == [1, 1, 1]
    custom = tiny_batch(arch, model, batch_size=4, seq_len=6, lengths=[6, 3])
    assert custom["attention_mask"].sum(1).tolist() == [6, 3, 6, 3]
    with pytest.raises(ValueError):
        tiny_batch(arch, model, seq_len=6, lengths=[7])


@pytest.mark.parametrize("arch", ARCHS)
def test_eager_and_sdpa_agree_and_padding_is_ignored(arch):
    eager = tiny_model(arch)
    batch = tiny_batch(arch, eager)
    changed = _fresh_and_padding_changed(arch, eager, batch)
    with torch.no_grad():
        logits = eager(**batch).logits
        assert logits.shape == (3, 3) and torch.isfinite(logits).all()
        torch.testing.assert_close(eager(**changed).logits, logits, rtol=0, atol=1e-5)
    if arch == "deberta-v2":
        # DeBERTa-v2 computes attention itself: no sdpa, no switching (set_attn_implementation only warns).
        assert not eager._can_set_attn_implementation()
        with pytest.raises(ValueError):
            tiny_model(arch, attn_implementation="sdpa")
        return
    assert eager._can_set_attn_implementation()
    sdpa = tiny_model(arch, attn_implementation="sdpa")
    assert sdpa.config._attn_implementation == "sdpa"
    with torch.no_grad():
        torch.testing.assert_close(sdpa(**batch).logits, logits, rtol=0, atol=1e-4)
        torch.testing.assert_close(sdpa(**changed).logits, logits, rtol=0, atol=1e-4)
        # switching an eager model to sdpa and back
        eager.set_attn_implementation("sdpa")
        assert eager.config._attn_implementation == "sdpa"
        torch.testing.assert_close(eager(**batch).logits, logits, rtol=0, atol=1e-4)
        eager.set_attn_implementation("eager")
        assert eager.config._attn_implementation == "eager"
        torch.testing.assert_close(eager(**batch).logits, logits, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_attention_is_far_from_uniform_and_masks_padding(arch):
    model = tiny_model(arch, num_layers=3)
    batch = tiny_batch(arch, model)
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    groups = [_attentions(out)]
    if arch in ENCODER_DECODER_ARCHITECTURES:
        groups += [out.decoder_attentions, out.cross_attentions]
    for group in groups:
        assert len(group) == 3
        assert all(a.shape == (3, 4, 10, 10) for a in group)
    real = batch["attention_mask"].bool()
    t = real.shape[1]
    visible = real[:, None, None, :].expand(-1, 1, t, -1).clone()  # (B, 1, Tq, Tk) keys a real query may attend
    if arch in DECODER_ARCHITECTURES:
        visible &= torch.ones(t, t, dtype=torch.bool).tril()
    for layer in _attentions(out):
        rows = real[:, None, :].expand(-1, layer.shape[1], -1)  # real query rows (B, H, Tq)
        assert layer.sum(-1)[rows].sub(1).abs().max() < 1e-5
        # exactly no attention from a real query to a padded (or, for decoders, future) key
        assert layer.masked_fill(visible, 0.0)[rows].abs().max() < 1e-6
        n_visible = visible.sum(-1).expand_as(rows)
        ratio = (layer.max(-1).values * n_visible)[rows]  # 1.0 would be uniform
        assert ratio.mean() > 1.5, f"attention too uniform: max prob x n = {ratio.mean():.2f}"


@pytest.mark.parametrize("arch", ARCHS)
def test_zeroing_one_key_in_the_last_layer_moves_logits(arch, probe):
    model = tiny_model(arch)
    batch = tiny_batch(arch, model)
    with torch.no_grad():
        logits = model(**batch).logits
    moved = []
    if arch == "deberta-v2":
        # no attention interface: the probabilities pass through attention.self.dropout, where a hook can edit them
        dropout = model.deberta.encoder.layer[-1].attention.self.dropout
        for j in range(10):

            def zero_key(module, args, output, j=j):
                output = output.clone()
                output[..., j] = 0.0
                return output / output.sum(-1, keepdim=True)

            handle = dropout.register_forward_hook(zero_key)
            try:
                with torch.no_grad():
                    moved.append((model(**batch).logits - logits)[0].abs().max().item())
            finally:
                handle.remove()
    else:
        model.set_attn_implementation(PROBE)
        probe.reset()
        with torch.no_grad():
            torch.testing.assert_close(model(**batch).logits, logits, rtol=0, atol=1e-5)
        calls = probe.calls
        assert calls == (6 if arch in ENCODER_DECODER_ARCHITECTURES else 2)  # bart/t5: enc self, dec self, cross
        for j in range(10):
            probe.reset(target_call=calls - 1, key=j)  # the last attention call of the forward
            with torch.no_grad():
                moved.append((model(**batch).logits - logits)[0].abs().max().item())
        probe.reset()
    assert max(moved) > 0.05, moved
