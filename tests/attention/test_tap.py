"""AttentionTap: exactness against eager attention, interventions, restoration, routes and errors.

The references are independent of attnfaith: transformers' eager ``output_attentions``, the eager logits, hand
computations on the captured probabilities and float64 finite differences.
"""

from __future__ import annotations


import pytest
import torch
from torch import nn

from attnfaith.attention import AttentionTap, AttentionUnreachableError, hf, known_layers, real_key_permutation
from attnfaith.nn import AttentionSoftmax
from attnfaith.testing import (
    ARCHITECTURES,
    DECODER_ARCHITECTURES,
    ENCODER_DECODER_ARCHITECTURES,
    tiny_batch,
    tiny_model,
    to_float64,
)

ARCHS = list(ARCHITECTURES)
IMPL_CASES = [(a, "eager") for a in ARCHS] + [(a, "sdpa") for a in ARCHS if a != "deberta-v2"]  # deberta: no sdpa


# ----------------------------------------------------------------------------------------------------------- helpers


def all_configs(model: nn.Module) -> list:
    """Every config object reachable from the model: each module's ``config`` and, recursively, its sub-configs."""
    from transformers import PretrainedConfig

    found: dict[int, object] = {}

    def visit(cfg):
        if isinstance(cfg, PretrainedConfig) and id(cfg) not in found:
            found[id(cfg)] = cfg
            for key in getattr(cfg, "sub_configs", None) or {}:
                visit(getattr(cfg, key, None))

    for m in model.modules():
        visit(getattr(m, "config", None))
    return list(found.values())


_HOOK_DICTS = (
    "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_load_state_dict_pre_hooks",
)


def model_state(model: nn.Module):
    """What leaving a tap must restore: attention implementations, hooks on every module, global hooks."""
    import torch.nn.modules.module as module_mod

    impls = [(id(c), c._attn_implementation) for c in all_configs(model)]
    hooks = [(n, tuple(len(getattr(m, a, None) or {}) for a in _HOOK_DICTS)) for n, m in model.named_modules()]
    globals_ = tuple(len(getattr(module_mod, g)) for g in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                           "_global_backward_hooks", "_global_backward_pre_hooks"))
    return impls, hooks, globals_, model.training


def eager_attentions(model, batch) -> list[torch.Tensor]:
    """Eager ``output_attentions`` in the tap's call order (encoder-decoders: encoder, then per decoder layer self
    and cross)."""
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    if getattr(out, "encoder_attentions", None) is not None:
        atts = list(out.encoder_attentions)
        for self_att, cross_att in zip(out.decoder_attentions, out.cross_attentions):
            atts += [self_att, cross_att]
        return atts
    return list(out.attentions)


def allowed_keys(batch, arch, T) -> torch.Tensor:
    """[B, 1, T, T] keys a real query may see (padding, and the future for decoders)."""
    real = batch["attention_mask"].bool()
    allowed = real[:, None, None, :].expand(-1, 1, T, -1).clone()
    if arch in DECODER_ARCHITECTURES:
        allowed &= torch.ones(T, T, dtype=torch.bool).tril()
    return allowed


# ----------------------------------------------------------------------------------------------- exact no-op capture


@pytest.mark.parametrize("arch,impl", IMPL_CASES)
def test_tap_reproduces_eager_logits_and_attentions(arch, impl):
    eager = tiny_model(arch)
    model = tiny_model(arch, attn_implementation=impl)
    assert model.config._attn_implementation == impl
    batch = tiny_batch(arch, model)
    with torch.no_grad():
        ref_logits = eager(**batch).logits
    ref = eager_attentions(eager, batch)
    before = model_state(model)
    with torch.no_grad(), AttentionTap(model) as tap:
        logits = model(**batch).logits
        if impl == "sdpa":  # inside the tap every config uses attnfaith's implementation
            assert {c._attn_implementation for c in all_configs(model)} == {hf.IMPLEMENTATION}
    assert model_state(model) == before
    assert model.config._attn_implementation == impl
    assert not hf._ACTIVE
    if arch != "deberta-v2":  # routed through a function registered with both interfaces
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        assert hf.IMPLEMENTATION in AttentionInterface._global_mapping
        assert hf.IMPLEMENTATION in AttentionMaskInterface._global_mapping
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    atts = tap.attentions
    assert isinstance(atts, tuple) and len(atts) == len(ref) == len(tap.layers)
    for i, (a, r) in enumerate(zip(atts, ref)):
        assert a.shape == r.shape and a.dim() == 4, i
        torch.testing.assert_close(a, r, rtol=0, atol=1e-6, msg=f"layer {i} ({tap.layers[i].name})")
        assert not a.requires_grad
    # every layer is identified once, in call order
    assert [l.index for l in tap.layers] == list(range(len(ref)))
    assert len({l.name for l in tap.layers}) == len(ref)
    assert tap.route == ("dropout" if arch == "deberta-v2" else "interface")
    assert known_layers(model) == tap.layers
    # the model after the tap: eager logits, bit for bit (same implementation as before)
    with torch.no_grad():
        again = model(**batch).logits
    if impl == "eager":
        assert torch.equal(again, ref_logits)
    else:
        torch.testing.assert_close(again, ref_logits, rtol=0, atol=1e-4)


@pytest.mark.parametrize("arch", ["bert", "llama", "t5"])
def test_softmax_dtype_follows_the_model(arch):
    """Softmax in promote_types(dtype, float32): bfloat16 models match eager bit for bit (float32 softmax, cast back);
    float64 models keep float64 probabilities (rows sum to 1 to 1e-12, no NaN from fully masked rows)."""
    model = tiny_model(arch).to(torch.bfloat16)
    batch = tiny_batch(arch, model)
    ref = eager_attentions(model, batch)
    with torch.no_grad(), AttentionTap(model) as tap:
        logits = model(**batch).logits
    with torch.no_grad():
        assert torch.equal(logits, model(**batch).logits)
    assert all(a.dtype == torch.bfloat16 and torch.equal(a, r) for a, r in zip(tap.attentions, ref, strict=True))
    model = tiny_model(arch).double()
    with torch.no_grad(), AttentionTap(model) as tap:
        logits = model(**batch).logits
    assert torch.isfinite(logits).all()
    for a in tap.attentions:
        assert a.dtype == torch.float64 and torch.isfinite(a).all()
        real_rows = (a.sum(-1) > 0.5)
        torch.testing.assert_close(a.sum(-1)[real_rows], torch.ones_like(a.sum(-1)[real_rows]), rtol=0, atol=1e-12)


def test_attention_function_masks_gqa_bias_softcap_and_sinks():
    """attnfaith's registered attention function on its own: bool, additive and no mask (causal or not), grouped
    key/value heads, an additive position bias, soft-capping and attention sinks, against a direct computation."""
    gen = torch.Generator().manual_seed(0)
    B, Hq, Hkv, T, D = 2, 4, 2, 5, 8
    q, k, v = (torch.randn(B, h, T, D, generator=gen) for h in (Hq, Hkv, Hkv))
    module = nn.Module()
    module.is_causal = False
    keys = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)[:, None, None, :].expand(B, 1, T, T)
    kr, vr = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    bias = torch.randn(1, Hq, T, T, generator=gen)

    def reference(allowed, scale=D ** -0.5, bias=None, softcap=None, sinks=None):
        s = q @ kr.transpose(-1, -2) * scale
        if softcap is not None:
            s = torch.tanh(s / softcap) * softcap
        if bias is not None:
            s = s + bias
        s = s.masked_fill(~allowed, float("-inf"))
        if sinks is not None:
            s = torch.cat([s, sinks.view(1, -1, 1, 1).expand(B, -1, T, 1)], -1)
        p = torch.softmax(s, -1)[..., :T]
        return (p @ vr).transpose(1, 2), p

    additive = torch.zeros(B, 1, T, T).masked_fill(~keys, torch.finfo(torch.float32).min)
    expected_out, expected_p = reference(keys)
    for mask in (keys, additive):
        out, p = hf.attnfaith_attention_forward(module, q, k, v, mask)
        torch.testing.assert_close(p, expected_p)
        torch.testing.assert_close(out, expected_out)
    # no mask: everything visible, or the causal triangle for a causal module
    full = torch.ones(B, 1, T, T, dtype=torch.bool)
    torch.testing.assert_close(hf.attnfaith_attention_forward(module, q, k, v, None)[1], reference(full)[1])
    module.is_causal = True
    tri = full & torch.ones(T, T, dtype=torch.bool).tril()
    torch.testing.assert_close(hf.attnfaith_attention_forward(module, q, k, v, None)[1], reference(tri)[1])
    module.is_causal = False
    # T5-style bias without scaling, Gemma-2 soft-capping, GPT-OSS sinks
    _, p = hf.attnfaith_attention_forward(module, q, k, v, additive, scaling=1.0, position_bias=bias)
    torch.testing.assert_close(p, reference(keys, scale=1.0, bias=bias)[1])
    _, p = hf.attnfaith_attention_forward(module, q, k, v, keys, softcap=2.0)
    torch.testing.assert_close(p, reference(keys, softcap=2.0)[1])
    sinks = torch.randn(Hq, generator=gen)
    _, p = hf.attnfaith_attention_forward(module, q, k, v, keys, s_aux=sinks)
    torch.testing.assert_close(p, reference(keys, sinks=sinks)[1])
    assert (p.sum(-1) < 1).all()  # the sink takes some of the weight


@pytest.mark.parametrize("arch", ARCHS)
def test_tap_restores_model_after_exception(arch):
    model = tiny_model(arch, num_layers=1)
    batch = tiny_batch(arch, model)
    before = model_state(model)
    with pytest.raises(KeyError, match="boom"):
        with AttentionTap(model):
            model(**batch)
            raise KeyError("boom")
    assert model_state(model) == before
    assert not hf._ACTIVE
    # an exception raised inside the forward (an intervention that does not fit the batch)
    with pytest.raises(ValueError, match="intervention"):
        with torch.no_grad(), AttentionTap(model) as tap:
            model(**batch)
            tap.intervene("zero", torch.zeros(7, batch["input_ids"].shape[1], dtype=torch.bool), layers=0)
            model(**batch)
    assert model_state(model) == before
    assert not hf._ACTIVE


def test_failed_forward_keeps_layer_list_and_tap_usable():
    model = tiny_model("bert", num_layers=3)
    batch = tiny_batch("bert", model)
    with torch.no_grad(), AttentionTap(model) as tap:
        model(**batch)
        full = tap.layers
        assert len(full) == 3
        iv = tap.intervene("zero", torch.zeros(7, 10, dtype=torch.bool), layers=0)  # wrong batch size
        with pytest.raises(ValueError, match="intervention"):
            model(**batch)
        # the failed forward saw one layer; the layer list (and the model-wide cache) must not shrink to it
        assert tap.layers == full and known_layers(model) == full
        tap.remove(iv)
        model(**batch)
        assert len(tap.attentions) == 3 and tap.resolve_layer(-1) == 2


def test_tap_nesting_and_reuse():
    model = tiny_model("bert", num_layers=1)
    batch = tiny_batch("bert", model)
    tap = AttentionTap(model)
    with tap, torch.no_grad():
        with pytest.raises(RuntimeError, match="already active"):
            with AttentionTap(model):
                pass
        with pytest.raises(RuntimeError, match="already active"):
            tap.__enter__()
        model(**batch)
    first = tap.attentions[0]
    with tap, torch.no_grad():  # a tap can be entered again after it was left
        model(**batch)
    assert torch.equal(tap.attentions[0], first)
    assert not hf._ACTIVE


# ------------------------------------------------------------------------------------------------- interventions


@pytest.mark.parametrize("arch", ARCHS)
def test_intervention_on_one_row_and_layer_leaves_other_rows_bit_identical(arch):
    model = tiny_model(arch)
    batch = tiny_batch(arch, model)
    rows = torch.tensor([False, True, False])
    with torch.no_grad(), AttentionTap(model) as tap:
        base = model(**batch).logits
        base_atts = tap.attentions
        n = len(tap.layers)
        for layer in (0, -1):
            tap.clear()
            tap.intervene("uniform", layers=layer, rows=rows)
            logits = model(**batch).logits
            assert torch.equal(logits[0], base[0]) and torch.equal(logits[2], base[2]), (arch, layer)
            assert (logits[1] - base[1]).abs().max() > 1e-4, (arch, layer)
            idx = layer % n
            # layers before the intervened one are untouched; the intervened layer changed in row 1 only
            for i in range(idx):
                assert torch.equal(tap.attentions[i], base_atts[i])
            att = tap.attentions[idx]
            assert torch.equal(att[0], base_atts[idx][0]) and torch.equal(att[2], base_atts[idx][2])
            assert not torch.equal(att[1], base_atts[idx][1])
        # other kinds on one row keep the other rows bit-identical too
        T = batch["input_ids"].shape[1]
        for kind, value in (
            ("permute", real_key_permutation(batch["attention_mask"].bool(), generator=torch.Generator().manual_seed(0))[:, 0]),
            ("zero", torch.arange(T).expand(3, T) == 1),
        ):
            tap.clear()
            tap.intervene(kind, value, layers=-1, rows=rows)
            logits = model(**batch).logits
            assert torch.equal(logits[0], base[0]) and torch.equal(logits[2], base[2]), (arch, kind)
            assert not torch.equal(logits[1], base[1]), (arch, kind)


def test_real_key_permutation_moves_real_keys_only():
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 0, 1, 0, 1, 1]], dtype=torch.bool)
    perm = real_key_permutation(mask, n=5, generator=torch.Generator().manual_seed(0), heads=2)
    assert perm.shape == (3, 5, 2, 6)
    again = real_key_permutation(mask, n=5, generator=torch.Generator().manual_seed(0), heads=2)
    assert torch.equal(perm, again)
    for b in range(3):
        real = mask[b].nonzero().flatten().tolist()
        for row in perm[b].reshape(-1, 6).tolist():
            assert sorted(row) == list(range(6))
            assert all(row[k] == k for k in range(6) if not mask[b, k])
            assert sorted(row[k] for k in real) == real
    assert len({tuple(r) for r in perm[0].reshape(-1, 6).tolist()}) > 1


def _hand(kind, p, allowed, value, causal):
    """Reference intervention on p [B, H, Tq, Tk]; allowed [B, 1|H, Tq, Tk]."""
    B, H, Tq, Tk = p.shape
    allowed = allowed.expand(B, H, Tq, Tk)
    out = torch.empty_like(p)
    for b in range(B):
        for h in range(H):
            for q in range(Tq):
                row = p[b, h, q]
                ok = allowed[b, h, q]
                if kind == "permute":
                    perm = value[b] if value.dim() == 2 else value[b, h]
                    new = torch.stack([row[int(perm[k])] for k in range(Tk)])
                elif kind == "zero":
                    erase = value[b] if value.dim() == 2 else value[b, h]
                    new = torch.where(erase, torch.zeros_like(row), row)
                    new = new / new.sum() if new.sum() > 0 else new
                elif kind == "replace":
                    new = value[b, h, q].clone()
                elif kind == "uniform":
                    n = int(ok.sum())
                    new = ok.to(p.dtype) / n if n else row.clone()
                if causal and kind in ("permute", "replace"):
                    kept = torch.where(ok, new, torch.zeros_like(new))
                    if kept.sum() != new.sum():  # weight on a key the query may not see: dropped, row rescaled
                        new = kept * (new.sum() / kept.sum()) if kept.sum() != 0 else kept
                out[b, h, q] = new
    return out


@pytest.mark.parametrize("arch", ["bert", "llama", "deberta-v2", "t5"])
@pytest.mark.parametrize("kind", ["permute", "zero", "replace", "uniform"])
def test_intervention_kinds_against_hand_computation(arch, kind):
    model = tiny_model(arch, num_layers=1)
    batch = tiny_batch(arch, model)
    mask = batch["attention_mask"].bool()
    B, T = mask.shape
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad(), AttentionTap(model) as tap:
        model(**batch)
        p = tap.attentions[0]
        H = p.shape[1]
        info = tap.layers[0]
        assert info.causal == (arch in DECODER_ARCHITECTURES)
        if kind == "permute":  # different permutation per head; moves weight onto future keys in causal layers
            value = torch.stack([torch.stack([torch.randperm(T, generator=gen) for _ in range(H)]) for _ in range(B)])
        elif kind == "zero":
            value = torch.rand(B, T, generator=gen) < 0.4
        elif kind == "replace":
            value = torch.rand(B, H, T, T, generator=gen)
            value = value / value.sum(-1, keepdim=True)
        else:
            value = None
        tap.intervene(kind, value, layers=0)
        model(**batch)
        new = tap.attentions[0]
    # keys each query may see: the real keys (every arch here masks padded keys only), in the past when causal
    allowed = mask[:, None, None, :].expand(B, 1, T, T)
    if info.causal:
        allowed = allowed & torch.ones(T, T, dtype=torch.bool).tril()
        allowed = allowed & mask[:, None, :, None]  # left-padded query rows are fully masked in a causal layer
    expected = _hand(kind, p, allowed, value, info.causal)
    torch.testing.assert_close(new, expected, rtol=0, atol=1e-6)
    if kind == "replace" and not info.causal:
        assert torch.equal(new, value)  # used exactly as given


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("kind", ["permute", "replace", "uniform"])
def test_causal_interventions_never_reach_a_future_key(arch, kind):
    model = tiny_model(arch)
    batch = tiny_batch(arch, model)
    real = batch["attention_mask"].bool()
    B, T = real.shape
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad(), AttentionTap(model) as tap:
        model(**batch)
        before = tap.attentions
        H = before[-1].shape[1]
        if kind == "permute":  # reverse every row: the weight on key 0 moves to the last key
            value = torch.arange(T).flip(0).expand(B, T).contiguous()
        elif kind == "replace":  # dense random weights, most of them on future keys
            value = torch.rand(B, H, T, T, generator=gen)
            value = value / value.sum(-1, keepdim=True)
        else:
            value = None
        tap.intervene(kind, value, layers=-1)
        logits = model(**batch).logits
        after = tap.attentions
    assert torch.isfinite(logits).all()
    att = after[-1]
    assert tap.layers[-1].causal
    # real queries: exactly no weight on a future key
    fut_real = future & real[:, None, :, None]
    assert att.masked_select(fut_real.expand_as(att)).abs().max() == 0
    # padded (fully masked) query rows: no more future weight than eager itself gives them (uniform over all keys)
    fut_weight = (att * future).sum(-1)
    assert (fut_weight <= (before[-1] * future).sum(-1) + 1e-7).all()
    # real query rows still sum to 1 (uniform, replace) or to at most 1 (permute may drop everything)
    sums = att.sum(-1)[real[:, None, :].expand(B, H, T)]
    if kind == "permute":
        assert (sums <= 1 + 1e-6).all()
    else:
        torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["bert", "llama", "deberta-v2"])
def test_head_selection_changes_only_that_head(arch):
    model = tiny_model(arch)
    batch = tiny_batch(arch, model)
    with torch.no_grad(), AttentionTap(model) as tap:
        base = model(**batch).logits
        p0 = tap.attentions[0]
        tap.intervene("uniform", layers=0, heads=1)
        logits = model(**batch).logits
        new = tap.attentions[0]
        assert not torch.equal(logits, base)
        for h in range(new.shape[1]):
            assert torch.equal(new[:, h], p0[:, h]) == (h != 1), h
        tap.clear()
        tap.intervene("uniform", layers=0, heads=[-1])  # negative head index
        model(**batch)
        new = tap.attentions[0]
        H = new.shape[1]
        assert not torch.equal(new[:, H - 1], p0[:, H - 1]) and torch.equal(new[:, : H - 1], p0[:, : H - 1])


def test_several_interventions_and_layers_none():
    model = tiny_model("bert", num_layers=3)
    batch = tiny_batch("bert", model)
    with torch.no_grad(), AttentionTap(model) as tap:
        model(**batch)
        tap.intervene("uniform", layers=None)
        model(**batch)
        real = batch["attention_mask"].bool()
        for att in tap.attentions:  # every layer uniform over the real keys
            expected = (real[:, None, None, :] / real.sum(-1)[:, None, None, None]).expand_as(att)
            torch.testing.assert_close(att, expected.float(), rtol=0, atol=1e-7)
        tap.clear()
        tap.intervene("uniform", layers=[0, -1])
        model(**batch)
        uniform = lambda a: torch.allclose(a[0, 0, 0], torch.full((10,), 0.1))  # row 0 has no padding
        assert [uniform(a) for a in tap.attentions] == [True, False, True]


def test_keep_grad_and_capture_options():
    model = tiny_model("bert", num_layers=3)
    batch = tiny_batch("bert", model)
    with AttentionTap(model, keep_grad=True) as tap:
        logits = model(**batch).logits
        grads = torch.autograd.grad(logits[:, 0].sum(), tap.attentions)
    assert len(grads) == 3 and all(g.shape == a.shape for g, a in zip(grads, tap.attentions))
    assert all(g.abs().sum() > 0 for g in grads)
    # frozen parameters: the captured weights become leaves that still receive d output / d attention
    for p_ in model.parameters():
        p_.requires_grad_(False)
    with AttentionTap(model, keep_grad=True, capture=[-1]) as tap:
        logits = model(**batch).logits
        (g,) = torch.autograd.grad(logits[:, 0].sum(), tap.attentions)
    torch.testing.assert_close(g, grads[-1])
    assert len(tap.attentions) == 1 and tap.attention(-1) is tap.attentions[0]
    with pytest.raises(ValueError, match="not captured"):
        tap.attention(0)
    with torch.no_grad(), AttentionTap(model, capture=None) as tap:
        model(**batch)
    assert tap.attentions == () and len(tap.layers) == 3


# ------------------------------------------------------------------------------------- gradients: finite differences



def target_prob(model, batch, target):
    logits = model(**batch).logits
    return torch.softmax(logits, dim=-1).gather(1, target[:, None]).sum()


def finite_difference(model, batch, tap, layer, p, entries, target, eps=1e-6):
    """Central difference of the summed target probability, perturbing attention ``layer`` through a ``replace``
    intervention ``p ± eps·E`` with ``E`` the indicator of one entry."""
    out = []
    with torch.no_grad():
        for entry in entries:
            vals = []
            for sign in (1.0, -1.0):
                value = p.clone()
                value[entry] += sign * eps
                iv = tap.intervene("replace", value, layers=layer)
                vals.append(target_prob(model, batch, target).item())
                tap.remove(iv)
            out.append((vals[0] - vals[1]) / (2 * eps))
    return torch.tensor(out, dtype=torch.float64)


def fd_entries(p, grad, real, causal, n, seed):
    """``n`` entries (b, h, q, k) with a real query and a key it may see: ``n - 1`` among those with a gradient
    (the last layer of an encoder classifier only matters through its pooled query row), one anywhere."""
    B, H, T, _ = p.shape
    ok = real[:, None, :, None] & real[:, None, None, :]
    if causal:
        ok = ok & torch.ones(T, T, dtype=torch.bool).tril()
    ok = ok.expand(B, H, T, T)
    gen = torch.Generator().manual_seed(seed)
    strong = (ok & (grad.abs() > 1e-3)).nonzero()
    anywhere = ok.nonzero()
    picks = [strong[i] for i in torch.randperm(len(strong), generator=gen)[: n - 1]]
    picks.append(anywhere[int(torch.randint(len(anywhere), (1,), generator=gen))])
    return [tuple(int(i) for i in e) for e in picks]


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama", "deberta-v2"])
@pytest.mark.parametrize("layer", [0, -1])
def test_keep_grad_matches_float64_finite_difference(arch, layer):
    model = to_float64(tiny_model(arch))
    batch = tiny_batch(arch, model)
    with AttentionTap(model, keep_grad=True) as tap:
        logits = model(**batch).logits
        target = logits.argmax(-1)
        (grad,) = torch.autograd.grad(torch.softmax(logits, -1).gather(1, target[:, None]).sum(), tap.attention(layer))
        p = tap.attention(layer).detach()
        assert p.dtype == torch.float64
        entries = fd_entries(p, grad, batch["attention_mask"].bool(), tap.layers[layer].causal, 5, seed=1)
        fd = finite_difference(model, batch, tap, layer, p, entries, target)
    analytic = torch.stack([grad[e] for e in entries])
    assert (analytic[:-1].abs() > 1e-3).all()
    rel = (fd - analytic).abs() / analytic.abs().clamp_min(1e-3)  # (an absolute 1e-6 for a vanishing gradient)
    assert rel.max() < 1e-3, (fd, analytic)


# ------------------------------------------------------------------------------------------------------- layer info


def test_layer_info_t5_bart_albert_distilbert():
    expected = {
        "t5": [
            ("transformer.encoder.block.0.layer.0.SelfAttention", "self", False),
            ("transformer.encoder.block.1.layer.0.SelfAttention", "self", False),
            ("transformer.decoder.block.0.layer.0.SelfAttention", "self", True),
            ("transformer.decoder.block.0.layer.1.EncDecAttention", "cross", False),
            ("transformer.decoder.block.1.layer.0.SelfAttention", "self", True),
            ("transformer.decoder.block.1.layer.1.EncDecAttention", "cross", False),
        ],
        "bart": [
            ("model.encoder.layers.0.self_attn", "self", False),
            ("model.encoder.layers.1.self_attn", "self", False),
            ("model.decoder.layers.0.self_attn", "self", True),
            ("model.decoder.layers.0.encoder_attn", "cross", False),
            ("model.decoder.layers.1.self_attn", "self", True),
            ("model.decoder.layers.1.encoder_attn", "cross", False),
        ],
        "albert": [
            ("albert.encoder.albert_layer_groups.0.albert_layers.0.attention", "self", False),
            ("albert.encoder.albert_layer_groups.0.albert_layers.0.attention#1", "self", False),
        ],
        "distilbert": [
            ("distilbert.transformer.layer.0.attention", "self", False),
            ("distilbert.transformer.layer.1.attention", "self", False),
        ],
    }
    for arch, layers in expected.items():
        model = tiny_model(arch)
        batch = tiny_batch(arch, model)
        with torch.no_grad(), AttentionTap(model) as tap:
            model(**batch)
        assert [(l.name, l.kind, l.causal) for l in tap.layers] == layers, arch
        assert [l.index for l in tap.layers] == list(range(len(layers)))
        assert all(l.route == "interface" and l.num_heads == 4 for l in tap.layers)
        names = dict(model.named_modules())
        assert all(l.name.split("#")[0] in names for l in tap.layers)
        # the layer info is known to a new tap before its first forward, and negative indices resolve
        fresh = AttentionTap(model)
        assert fresh.layers == tap.layers and fresh.resolve_layer(-1) == len(layers) - 1
    # ALBERT's one shared module: the two calls are two layers, each interveneable on its own
    model = tiny_model("albert")
    batch = tiny_batch("albert", model)
    with torch.no_grad(), AttentionTap(model) as tap:
        model(**batch)
        base = tap.attentions
        tap.intervene("uniform", layers=1)
        model(**batch)
        assert torch.equal(tap.attentions[0], base[0]) and not torch.equal(tap.attentions[1], base[1])


def test_deberta_v2_dropout_route():
    model = tiny_model("deberta-v2")
    batch = tiny_batch("deberta-v2", model)
    assert not model._can_set_attn_implementation()
    with pytest.raises(AttentionUnreachableError, match="model"):
        with AttentionTap(model, route="interface"):
            pass
    before = model_state(model)
    with torch.no_grad(), AttentionTap(model) as tap:
        base = model(**batch).logits
        assert tap.route == "dropout"
        # the dropout on the probabilities, not its sibling pos_dropout on the relative embeddings
        assert [l.name for l in tap.layers] == [f"deberta.encoder.layer.{i}.attention.self.dropout" for i in range(2)]
        assert all(l.kind == "self" and not l.causal and l.route == "dropout" for l in tap.layers)
        tap.intervene("zero", torch.arange(10).expand(3, 10) == 2, layers=-1)
        changed = model(**batch).logits
        assert not torch.equal(changed, base)
        p = tap.attentions[-1]
        assert (p[..., 2] == 0).all()
    assert model_state(model) == before
    # in train mode (dropout p > 0) the tap still reads the probabilities before dropout and restores the mode
    model = tiny_model("deberta-v2", attention_probs_dropout_prob=0.5).train()
    with torch.no_grad(), AttentionTap(model) as tap:
        model(**batch)
    assert model.training
    for a in tap.attentions:
        s = a.sum(-1)[batch["attention_mask"].bool()[:, None, :].expand(-1, 4, -1)]
        torch.testing.assert_close(s, torch.ones_like(s))


# ---------------------------------------------------------------------------------------------- custom models


class AdditiveAttentionClassifier(nn.Module):
    """Single-query additive attention (Bahdanau / Jain & Wallace): scores [B, T] → AttentionSoftmax."""

    def __init__(self, vocab=30, dim=16, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, 1, bias=False)
        self.attn = AttentionSoftmax()
        self.out = nn.Linear(dim, classes)

    def attention(self, input_ids, attention_mask):
        h = self.emb(input_ids)
        return self.attn(self.v(torch.tanh(self.proj(h))).squeeze(-1), attention_mask.bool()), h

    def forward(self, input_ids, attention_mask):
        a, h = self.attention(input_ids, attention_mask)
        return self.out((a.unsqueeze(-1) * h).sum(1))


class PlainSelfAttentionClassifier(nn.Module):
    """Multi-head self-attention with a plain ``nn.Softmax`` module (reached with ``modules=[...]``)."""

    def __init__(self, vocab=30, dim=16, heads=2, classes=3):
        super().__init__()
        self.heads = heads
        self.emb = nn.Embedding(vocab, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.softmax = nn.Softmax(dim=-1)
        self.out = nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask):
        B, T = input_ids.shape
        x = self.emb(input_ids)
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        scores = scores.masked_fill(~attention_mask.bool()[:, None, None, :], -1e9)
        a = self.softmax(scores)
        h = (a @ v).transpose(1, 2).reshape(B, T, -1)
        return self.out(h[:, 0])


def _custom_batch():
    ids = torch.tensor([[1, 5, 6, 7, 8, 2], [1, 9, 10, 2, 0, 0], [1, 11, 2, 0, 0, 0]])
    return ids, (ids != 0).long()


def test_custom_attention_softmax_model():
    torch.manual_seed(0)
    model = AdditiveAttentionClassifier().eval()
    ids, mask = _custom_batch()
    before = model_state(model)
    with torch.no_grad():
        ref_logits = model(ids, mask)
        ref_att, _ = model.attention(ids, mask)
        with AttentionTap(model) as tap:
            logits = model(ids, mask)
            assert tap.route == "module" and len(tap.layers) == 1
            assert tap.layers[0].name == "attn" and tap.layers[0].num_heads == 1 and not tap.layers[0].causal
            att = tap.attentions[0]
            assert att.shape == (3, 1, 1, 6)
            torch.testing.assert_close(att[:, 0, 0], ref_att, rtol=0, atol=0)
            assert torch.equal(logits, ref_logits)
            # uniform over the real tokens, computed by hand
            tap.intervene("uniform")
            uni_logits = model(ids, mask)
            expected = mask.float() / mask.sum(1, keepdim=True)
            torch.testing.assert_close(tap.attentions[0][:, 0, 0], expected, rtol=0, atol=0)
            h = model.emb(ids)
            torch.testing.assert_close(uni_logits, model.out((expected.unsqueeze(-1) * h).sum(1)))
            tap.clear()
            perm = real_key_permutation(mask.bool(), generator=torch.Generator().manual_seed(0))[:, 0]
            tap.intervene("permute", perm, rows=torch.tensor([True, False, True]))
            perm_logits = model(ids, mask)
            torch.testing.assert_close(tap.attentions[0][:, 0, 0][0], ref_att[0][perm[0]], rtol=0, atol=0)
            assert torch.equal(perm_logits[1], ref_logits[1])
            tap.clear()
            tap.intervene("zero", torch.tensor([[False, True, False, False, False, False]] * 3))
            model(ids, mask)
            z = ref_att.clone()
            z[:, 1] = 0
            torch.testing.assert_close(tap.attentions[0][:, 0, 0], z / z.sum(1, keepdim=True), rtol=0, atol=1e-7)
    assert model_state(model) == before


def test_custom_model_via_modules():
    torch.manual_seed(0)
    model = PlainSelfAttentionClassifier().eval()
    ids, mask = _custom_batch()
    with torch.no_grad():
        ref = model(ids, mask)
    with pytest.raises(ValueError, match="modules"):
        AttentionTap(model, modules=["nope"]).__enter__()
    with torch.no_grad(), AttentionTap(model, modules=["softmax"]) as tap:
        assert torch.equal(model(ids, mask), ref)
        assert tap.route == "module" and [l.name for l in tap.layers] == ["softmax"]
        att = tap.attentions[0]
        assert att.shape == (3, 2, 6, 6)
        assert (att.masked_select(~mask.bool()[:, None, None, :].expand_as(att)) < 1e-6).all()
        tap.intervene("uniform", rows=torch.tensor([False, False, True]))
        out = model(ids, mask)
        assert torch.equal(out[:2], ref[:2]) and not torch.equal(out[2], ref[2])
        # uniform over the real keys taken from the model's attention_mask argument
        torch.testing.assert_close(tap.attentions[0][2, :, :, :3], torch.full((2, 6, 3), 1 / 3), rtol=0, atol=1e-7)
        assert (tap.attentions[0][2, :, :, 3:] == 0).all()
    before = model_state(model)
    assert model_state(model) == before


def test_causal_attention_softmax_module():
    sm = AttentionSoftmax(causal=True)

    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.sm = sm

        def forward(self, scores):
            return self.sm(scores)

    model = Causal()
    scores = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), AttentionTap(model) as tap:
        model(scores)
        assert tap.layers[0].causal
        tap.intervene("permute", torch.arange(5).flip(0).expand(2, 5).contiguous())
        out = model(scores)
    assert (out * torch.ones(5, 5).triu(1)).abs().max() == 0
    # reversed keys: query q keeps the weight now on keys <= q (old keys >= 4 - q), rescaled to 1; queries 0, 1 had
    # no weight on keys >= 3 (future for them) and lose everything
    p = torch.softmax(scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf")), -1)
    expected = (p.flip(-1) * torch.ones(5, 5).tril())
    expected = expected / expected.sum(-1, keepdim=True).where(expected.sum(-1, keepdim=True) > 0, 1.0)
    torch.testing.assert_close(out, expected)
    assert (out.sum(-1)[:, :, :2] == 0).all()


# ------------------------------------------------------------------------------- an HF architecture not in the zoo

UNLISTED = {
    # sliding-window GQA decoder
    "mistral": dict(num_key_value_heads=2, sliding_window=4),
    # attention logit soft-capping + a query_pre_attn_scalar scaling
    "gemma2": dict(num_key_value_heads=2, head_dim=8, attn_logit_softcapping=5.0, sliding_window=4),
    # a BERT-style encoder under another name
    "xlm-roberta": dict(type_vocab_size=1),
    # attention sinks (s_aux), mixture of experts
    "gpt_oss": dict(num_key_value_heads=2, head_dim=8, num_local_experts=4, num_experts_per_tok=2, sliding_window=4),
}


@pytest.mark.parametrize("name", list(UNLISTED))
def test_unlisted_hf_architecture_works_unchanged(name):
    import transformers

    from attnfaith.testing import reinit

    kw = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              pad_token_id=0, bos_token_id=1, eos_token_id=2, num_labels=3, max_position_embeddings=64,
              use_cache=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    kw.update(UNLISTED[name])
    config = transformers.AutoConfig.for_model(name, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
        reinit(model, 0.2)
    model.eval()
    ids = torch.randint(5, 100, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    causal = name != "xlm-roberta"
    if name == "gpt_oss":
        assert model.model.layers[0].self_attn.sinks is not None
    if causal:  # left padding
        ids[1, :4], mask[1, :4] = 0, 0
    else:
        ids[1, 5:], mask[1, 5:] = 0, 0
    batch = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    before = model_state(model)
    with torch.no_grad(), AttentionTap(model) as tap:
        logits = model(**batch).logits
        assert tap.route == "interface"
        assert [l.causal for l in tap.layers] == [causal] * 2
        for a, r in zip(tap.attentions, out.attentions, strict=True):
            torch.testing.assert_close(a, r, rtol=0, atol=1e-6)
        tap.intervene("uniform", rows=torch.tensor([True, False, False]))
        changed = model(**batch).logits
    torch.testing.assert_close(logits, out.logits, rtol=0, atol=1e-5)
    assert not torch.equal(changed[0], logits[0]) and torch.equal(changed[1:], logits[1:])
    assert model_state(model) == before


@pytest.mark.parametrize("name", ["bloom", "megatron-bert"])
def test_dropout_route_found_generically_on_unlisted_models(name):
    """Models that compute attention themselves (no AttentionInterface): BLOOM (causal, ALiBi) and Megatron-BERT
    (bidirectional). The dropout on the probabilities is found without a per-model list, and a causal layer is
    recognised from its probabilities, so interventions never reach a future key."""
    import transformers

    from attnfaith.testing import reinit

    kw = dict(vocab_size=100, hidden_size=32, n_layer=2, num_hidden_layers=2, n_head=4, num_attention_heads=4,
              intermediate_size=64, pad_token_id=0, num_labels=3, max_position_embeddings=64, use_cache=False,
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config = transformers.AutoConfig.for_model(name, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
        reinit(model, 0.2)
    model.eval()
    assert not model._can_set_attn_implementation()
    causal = name == "bloom"
    ids = torch.randint(5, 100, (3, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    if causal:
        ids[1, :3], mask[1, :3] = 0, 0
    else:
        ids[1, 5:], mask[1, 5:] = 0, 0
    batch = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    before = model_state(model)
    with torch.no_grad(), AttentionTap(model) as tap:
        logits = model(**batch).logits
        assert tap.route == "dropout" and [l.causal for l in tap.layers] == [causal] * 2
        for a, r in zip(tap.attentions, out.attentions, strict=True):
            torch.testing.assert_close(a, r, rtol=0, atol=1e-6)
        tap.intervene("permute", torch.arange(8).flip(0).expand(3, 8).contiguous(), layers=None)
        changed = model(**batch).logits
        future = torch.ones(8, 8, dtype=torch.bool).triu(1) & mask.bool()[:, None, :, None]
        future_weight = max(float((a * future).abs().max()) for a in tap.attentions)
    assert (future_weight == 0) == causal
    torch.testing.assert_close(logits, out.logits, rtol=0, atol=1e-5)
    assert not torch.equal(changed, logits)
    assert model_state(model) == before


# ------------------------------------------------------------------------------------------ errors and edge cases


class _MLP(nn.Module):
    def __init__(self, dropout=False):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.drop = nn.Dropout(0.1) if dropout else nn.Identity()
        self.out = nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask=None):
        return self.out(self.drop(self.emb(input_ids)).mean(1))


def test_model_without_reachable_attention_raises_clear_error():
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="model") as err:  # no attention, no dropout
        with AttentionTap(_MLP()):
            pass
    assert isinstance(err.value, AttentionUnreachableError)
    model = _MLP(dropout=True).eval()  # dropouts, none on a probability tensor: found in the first forward
    before = model_state(model)
    with pytest.raises(AttentionUnreachableError, match="model"):
        with torch.no_grad(), AttentionTap(model):
            model(ids)
    assert model_state(model) == before
    with pytest.raises(AttentionUnreachableError, match="model"):
        with AttentionTap(_MLP(), route="module"):
            pass
    with pytest.raises(TypeError, match="model"):
        AttentionTap("bert")


def test_bad_arguments_name_the_argument():
    model = tiny_model("bert")
    batch = tiny_batch("bert", model)
    with pytest.raises(ValueError, match="route"):
        AttentionTap(model, route="magic")
    with pytest.raises(ValueError, match="capture"):
        AttentionTap(model, capture="last")
    fresh = tiny_model("bert", num_layers=3)
    with torch.no_grad(), AttentionTap(fresh) as tap:
        # the layer count is unknown before the first forward: a negative index must not be silently skipped
        with pytest.raises(ValueError, match="layers"):
            tap.intervene("uniform", layers=-1)
        fresh(**tiny_batch("bert", fresh))
        tap.intervene("uniform", layers=-1)  # now it resolves
    with torch.no_grad(), AttentionTap(model) as tap:
        model(**batch)
        with pytest.raises(ValueError, match="kind"):
            tap.intervene("shuffle", torch.zeros(3, 10))
        with pytest.raises(ValueError, match="value"):
            tap.intervene("permute")
        with pytest.raises(ValueError, match="layers"):
            tap.intervene("uniform", layers=2)
        with pytest.raises(ValueError, match="layer"):
            tap.attention(5)
        with pytest.raises(TypeError, match="layers"):
            tap.intervene("uniform", layers="last")
        with pytest.raises(TypeError, match="heads"):
            tap.intervene("uniform", heads="first")
        with pytest.raises(TypeError, match="rows"):
            tap.intervene("uniform", rows=torch.tensor([1, 0, 1]))
        tap.intervene("uniform", heads=9)
        with pytest.raises(ValueError, match="heads"):
            model(**batch)
        tap.clear()
        tap.intervene("permute", torch.zeros(3, 10))  # float positions
        with pytest.raises(TypeError, match="permute"):
            model(**batch)
        tap.clear()
        tap.intervene("replace", torch.zeros(3, 4, 10, 7))
        with pytest.raises(ValueError, match="replace"):
            model(**batch)
        tap.clear()
        assert torch.isfinite(model(**batch).logits).all()
    # a non-negative layer index given before the count is known and out of range: error after the first forward
    other = tiny_model("bert", num_layers=2, seed=5)
    with torch.no_grad(), AttentionTap(other) as tap:
        tap.intervene("uniform", layers=4)
        with pytest.raises(ValueError, match="layers=4"):
            other(**batch)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama", "deberta-v2", "t5"])
def test_no_nan_from_fully_padded_rows(arch):
    model = tiny_model(arch)
    batch = tiny_batch(arch, model, batch_size=3)
    # row 2 is all padding (every query fully masked); decoders' left padding also gives fully masked query rows
    batch["attention_mask"][2] = 0
    batch["input_ids"][2] = 0
    if arch == "t5":
        batch["input_ids"][2, 0] = 2  # t5 pools at the eos: keep one per row
    with torch.no_grad(), AttentionTap(model) as tap:
        logits = model(**batch).logits
        assert torch.isfinite(logits).all()
        assert all(torch.isfinite(a).all() for a in tap.attentions)
        T = batch["input_ids"].shape[1]
        for kind, value in (
            ("uniform", None),
            ("zero", torch.arange(T).expand(3, T) < 3),
            ("permute", torch.arange(T).flip(0).expand(3, T).contiguous()),
            ("replace", torch.full((1, 1, T, T), 1.0 / T)),
        ):
            tap.clear()
            tap.intervene(kind, value, layers=None)
            out = model(**batch).logits
            assert torch.isfinite(out).all(), kind
            assert all(torch.isfinite(a).all() for a in tap.attentions), kind
