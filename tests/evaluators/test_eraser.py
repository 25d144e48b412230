"""Comprehensiveness, Sufficiency, LogOdds, the soft metrics and NormalizedAOPC against plain one-forward-per-variant
loops (attnfaith.plain_loops: each variant built by hand, run alone and unpadded), on tiny models, several chunk sizes,
and a real BERT tokenizer batch with token_type_ids."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertTokenizerFast

from attnfaith import (
    Comprehensiveness, LogOdds, NormalizedAOPC, SoftComprehensiveness, SoftSufficiency, Sufficiency,
)
from attnfaith.metrics import log_odds, normalized_comprehensiveness, normalized_sufficiency
from attnfaith.testing import RowCounter, tiny_batch, tiny_model
from attnfaith.plain_loops import plain_aopc_bounds, plain_soft_probabilities, plain_topk_probabilities

ARCHS = ["bert", "gpt2", "llama"]
WORDS = ["good", "bad", "film", "plot", "great", "dull", "acting", "the", "a", "was", "not", "very", "story"]
_MODELS: dict = {}


def _model(arch):
    if arch not in _MODELS:
        model = tiny_model(arch, seed=3, std=0.4)
        enc = tiny_batch(arch, model, batch_size=4, seq_len=12, lengths=[12, 9, 5, 7], seed=3)
        scores = torch.randn(enc["input_ids"].shape, generator=torch.Generator().manual_seed(1))
        _MODELS[arch] = (model, enc, scores)
    return _MODELS[arch]


@pytest.fixture(scope="module")
def bert_tokenizer_batch():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})  # a real BERT tokenizer, built offline
    enc = tok(["the film was not very good", "a dull plot", "great acting the story was bad",
               "the film was good the plot was dull the acting was great"], padding=True, return_tensors="pt")
    pairs = tok(["the film was good", "a dull plot"], ["great story", "bad acting the film"], padding=True,
                return_tensors="pt")
    assert "token_type_ids" in enc and int(pairs["token_type_ids"].sum()) > 0
    model = tiny_model("bert", num_labels=2, vocab_size=len(vocab), pad_token_id=0, seed=1, std=0.4).eval()
    return model, tok, enc, pairs


CASES = [
    (Comprehensiveness, {}),
    (Sufficiency, {}),
    (Comprehensiveness, {"erase": "mask"}),
    (Sufficiency, {"erase": "pad"}),
    (Comprehensiveness, {"level": "attention"}),
    (Sufficiency, {"level": "attention", "rounding": "floor", "fractions": (0.1, 0.3, 0.5)}),
    (LogOdds, {}),
]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cls,kw", CASES, ids=[f"{c.__name__}-{k}" for c, k in CASES])
def test_topk_against_plain_loop(arch, cls, kw):
    model, enc, scores = _model(arch)
    pred, p0, pk = plain_topk_probabilities(cls(model, **kw), enc, scores)
    for chunk in (1, 3, None):
        res = cls(model, max_examples_per_batch=chunk, **kw).evaluate(enc, scores)
        assert torch.equal(res.prediction.cpu(), pred)
        torch.testing.assert_close(res.probability.cpu(), p0, rtol=0, atol=2e-6)
        torch.testing.assert_close(res.variant_probability.cpu(), pk[0], rtol=0, atol=2e-6, equal_nan=True)
        expected = log_odds(p0, pk[0]) if cls is LogOdds else p0[:, None] - pk[0]
        torch.testing.assert_close(res.values.cpu(), expected, rtol=0, atol=2e-5, equal_nan=True)
        torch.testing.assert_close(res.aopc.cpu(), torch.nanmean(expected, -1), rtol=0, atol=2e-5)


def test_random_ranking_averages_its_orders():
    model, enc, _ = _model("bert")
    ev = Comprehensiveness(model, n_random=3, seed=7, max_examples_per_batch=5)
    res = ev.evaluate(enc, "random", example_ids=[10, 11, 12, 13])
    _, p0, pk = plain_topk_probabilities(ev, enc, "random", example_ids=[10, 11, 12, 13])
    assert pk.shape[0] == 3 and res.aopc_per_order.shape == (4, 3)
    torch.testing.assert_close(res.values, (p0[None, :, None] - pk).mean(0), rtol=0, atol=2e-5)
    # the same example ids evaluated alone give the same orders
    alone = ev.evaluate({k: v[2:] for k, v in enc.items()}, "random", example_ids=[12, 13])
    torch.testing.assert_close(alone.aopc, res.aopc[2:], rtol=0, atol=2e-6)


def test_sufficiency_of_every_item_is_zero():
    model, enc, scores = _model("bert")
    for erase in ("delete", "mask"):
        res = Sufficiency(model, fractions=(1.0,), erase=erase).evaluate(enc, scores)
        torch.testing.assert_close(res.values, torch.zeros_like(res.values), rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cls", [SoftComprehensiveness, SoftSufficiency])
def test_soft_against_plain_loop(arch, cls):
    model, enc, scores = _model(arch)
    p0, pv, pe = plain_soft_probabilities(cls(model), enc, scores)
    norm = normalized_comprehensiveness if cls is SoftComprehensiveness else normalized_sufficiency
    for chunk in (1, 3, None):
        res = cls(model, max_examples_per_batch=chunk).evaluate(enc, scores)
        torch.testing.assert_close(res.variant_probability, pv[0], rtol=0, atol=2e-6)
        torch.testing.assert_close(res.empty_probability, pe, rtol=0, atol=2e-6)
        torch.testing.assert_close(res.value, p0 - pv[0], rtol=0, atol=2e-6)
        torch.testing.assert_close(res.normalized, norm(p0, pv[0], pe), rtol=0, atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_normalized_aopc_bounds_exact_and_beam(arch):
    model, enc, scores = _model(arch)
    short = {k: v[2:] for k, v in enc.items()}  # 3 to 5 items: exact, checked over every order
    ev = NormalizedAOPC(model, exact_max_items=6, beam_size=3, max_examples_per_batch=7)
    b = ev.bounds(short)
    assert bool(b.exact.all())
    lo, hi = plain_aopc_bounds(ev, short)
    torch.testing.assert_close(b.lower, lo, rtol=0, atol=2e-6)
    torch.testing.assert_close(b.upper, hi, rtol=0, atol=2e-6)
    beam = NormalizedAOPC(model, exact_max_items=0, beam_size=3, max_examples_per_batch=11).bounds(enc)
    assert not bool(beam.exact.any())
    lo, hi = plain_aopc_bounds(ev, enc, beam=True)
    torch.testing.assert_close(beam.lower, lo, rtol=0, atol=2e-6)
    torch.testing.assert_close(beam.upper, hi, rtol=0, atol=2e-6)
    # beam bounds lie inside the exact ones
    exact = NormalizedAOPC(model, exact_max_items=10).bounds(enc)
    assert bool((beam.lower >= exact.lower - 1e-6).all() and (beam.upper <= exact.upper + 1e-6).all())
    # the ranking's own AOPCs lie between the bounds; NAOPC in [0, 1]
    res = NormalizedAOPC(model, exact_max_items=10).evaluate(enc, scores, bounds=exact)
    for key in ("naopc_comp", "naopc_suff"):
        v = getattr(res, key)
        assert bool(((v >= -1e-5) & (v <= 1 + 1e-5)).all())


def test_normalized_aopc_curve_matches_comprehensiveness_bins():
    """The descending curve's step k equals Comprehensiveness(mask) at a bin of k items (both hand-checked above)."""
    model, enc, scores = _model("bert")
    res = NormalizedAOPC(model, exact_max_items=0, beam_size=1).evaluate(enc, scores)
    comp = Comprehensiveness(model, erase="mask", fractions=(0.5,)).evaluate(enc, scores)
    k = comp.sizes[:, 0]
    torch.testing.assert_close(res.curve_comp[torch.arange(4), k], comp.variant_probability[:, 0], rtol=0, atol=2e-6)
    n = res.n_items.double()
    drops = (res.probability[:, None] - res.curve_comp[:, 1:]).double()
    by_hand = torch.tensor([float(drops[b, : int(n[b])].sum() / n[b]) for b in range(4)], dtype=torch.float64)
    torch.testing.assert_close(res.aopc_comp.double(), by_hand, rtol=0, atol=1e-6)


def test_tokenizer_batch_with_token_types(bert_tokenizer_batch):
    model, tok, enc, pairs = bert_tokenizer_batch
    for batch in (enc, pairs):
        scores = torch.randn(batch["input_ids"].shape, generator=torch.Generator().manual_seed(2))
        for cls, kw in ((Comprehensiveness, {}), (Sufficiency, {"erase": "mask"}), (LogOdds, {})):
            _, p0, pk = plain_topk_probabilities(cls(model, **kw), batch, scores, tokenizer=tok)
            for chunk in (2, None):
                res = cls(model, max_examples_per_batch=chunk, **kw).evaluate(batch, scores, tokenizer=tok)
                torch.testing.assert_close(res.variant_probability, pk[0], rtol=0, atol=2e-6)
        p0, pv, pe = plain_soft_probabilities(SoftSufficiency(model), batch, scores, tokenizer=tok)
        res = SoftSufficiency(model, max_examples_per_batch=3).evaluate(batch, scores, tokenizer=tok)
        torch.testing.assert_close(res.variant_probability, pv[0], rtol=0, atol=2e-6)


def test_model_left_as_found_and_bad_input():
    model, enc, scores = _model("bert")
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    try:
        SoftComprehensiveness(model).evaluate(enc, scores)
        NormalizedAOPC(model, exact_max_items=4).evaluate(enc, scores)
        assert model.training and [p.requires_grad for p in model.parameters()] == flags
        assert not model._forward_hooks and not model.get_input_embeddings()._forward_hooks
    finally:
        model.eval()
    with pytest.raises(ValueError, match="fractions"):
        Comprehensiveness(model, fractions=(0.0,))
    with pytest.raises(ValueError, match="erase"):
        Sufficiency(model, erase="blank")
    with pytest.raises(ValueError, match="level"):
        LogOdds(model, level="layer")
    with pytest.raises(ValueError, match="beam_size"):
        NormalizedAOPC(model, beam_size=0)
    with pytest.raises(ValueError, match="attributions"):
        Comprehensiveness(model).evaluate(enc, torch.randn(2, 3))
    with pytest.raises(ValueError, match="bounds"):
        NormalizedAOPC(model).evaluate(enc, scores, bounds=NormalizedAOPC(model).bounds({k: v[:2] for k, v in
                                                                                          enc.items()}))
    assert not math.isnan(Comprehensiveness(model).evaluate(enc, scores).summary()["mean_aopc"])


# ---------------------------------------------------------------------------------------------------------------
# the oracle ranking on a planted-signal model
# ---------------------------------------------------------------------------------------------------------------


class _MarkerCounter(torch.nn.Module):
    """The planted task's exact rule as a model: logit(positive) = Σ over the real tokens of +1 for a positive
    marker, −1 for a negative one (filler 0), through an embedding whose first coordinate holds the polarity."""

    def __init__(self, vocab: int, positive: list[int], negative: list[int]) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 4)
        with torch.no_grad():
            self.embed.weight.zero_()
            self.embed.weight[positive, 0] = 1.0
            self.embed.weight[negative, 0] = -1.0

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        e = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        m = torch.ones(e.shape[:2]) if attention_mask is None else attention_mask.to(e.dtype)
        s = (e[..., 0] * m).sum(-1)
        return torch.stack([-s, s], dim=-1)


def test_the_oracle_ranking_is_best_on_a_planted_signal_model():
    """On a model that decides exactly by the planted markers, the oracle ranking (the markers of the predicted
    class first) reaches the best value of every ERASER-style metric among the rankings compared — random orders,
    filler first, leave-one-out — and beats random and filler-first strictly on the AOPCs."""
    from attnfaith import LeaveOneOut

    vocab = ["[PAD]", "[CLS]", "[SEP]", "good", "great", "bad", "awful", "the", "a", "film", "was", "river", "day"]
    ids = {w: i for i, w in enumerate(vocab)}
    model = _MarkerCounter(len(vocab), [ids["good"], ids["great"]], [ids["bad"], ids["awful"]]).eval()
    model.special_token_ids = {0, 1, 2}
    texts = ["the good film was a great day", "a bad river was the day", "the film was awful and bad a day",
             "great good the river", "the day was a bad film the river a", "a film the good day was the river"]
    rows = [[ids["[CLS]"], *[ids.get(w, ids["the"]) for w in t.split()], ids["[SEP]"]] for t in texts]
    T = max(map(len, rows))
    input_ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])
    mask = (input_ids != 0).long()
    enc = {"input_ids": input_ids, "attention_mask": mask}
    markers = torch.isin(input_ids, torch.tensor([ids[w] for w in ("good", "great", "bad", "awful")]))
    oracle = markers.float()
    filler_first = (~markers).float() * mask
    rankings = {"oracle": oracle, "filler first": filler_first, "random": "random",
                "loo": LeaveOneOut(model).attribute(enc)}
    higher = {
        "comprehensiveness": lambda s: Comprehensiveness(model).evaluate(enc, s).aopc,
        "soft comprehensiveness": lambda s: SoftComprehensiveness(model).evaluate(enc, s).value,
        "normalised AOPC (comprehensiveness)": lambda s: NormalizedAOPC(model).evaluate(enc, s).naopc_comp,
    }
    lower = {
        "sufficiency": lambda s: Sufficiency(model).evaluate(enc, s).aopc,
        "soft sufficiency": lambda s: SoftSufficiency(model).evaluate(enc, s).value,
        "log-odds": lambda s: LogOdds(model).evaluate(enc, s).aopc,
    }
    for name, metric in {**higher, **lower}.items():
        sign = 1.0 if name in higher else -1.0
        means = {k: sign * float(metric(s).nanmean()) for k, s in rankings.items()}
        assert means["oracle"] >= max(means.values()) - 1e-6, (name, means)
        if name in ("comprehensiveness", "sufficiency", "log-odds"):
            assert means["oracle"] > means["random"] + 1e-3 and means["oracle"] > means["filler first"] + 1e-3, (
                name, means)


@pytest.mark.parametrize("cls", [Comprehensiveness, Sufficiency, LogOdds])
@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_evaluate_many_equals_one_call_per_method(arch, cls):
    model, enc, scores = _model(arch)
    other = torch.randn(scores.shape, generator=torch.Generator().manual_seed(9))
    methods = {"a": scores, "b": other, "random": "random", "same as a": scores.clone()}
    many = cls(model, max_examples_per_batch=5, readout=False).evaluate_many(enc, methods)
    assert list(many) == list(methods)
    for name, attributions in methods.items():
        one = cls(model, readout=False).evaluate(enc, attributions, name=name)
        assert many[name].method == name
        assert torch.equal(many[name].sizes, one.sizes)
        torch.testing.assert_close(many[name].values, one.values, atol=1e-5, rtol=0, equal_nan=True)
        torch.testing.assert_close(many[name].aopc, one.aopc, atol=1e-5, rtol=0, equal_nan=True)
    # the originals once, and a variant shared by two rankings (here "same as a") once
    B = enc["input_ids"].shape[0]
    ev = cls(model, readout=False)
    counter = RowCounter(model)
    try:
        ev.evaluate_many(enc, {"a": scores})
        alone = counter.rows
        counter.rows = 0
        ev.evaluate_many(enc, {"a": scores, "same as a": scores.clone()})
        twice = counter.rows
    finally:
        counter.handle.remove()
    first = ev.evaluate(enc, scores)
    distinct = {(b, tuple(sorted(torch.topk(torch.where(first.items[b], scores[b], -torch.inf),
                                           int(k)).indices.tolist())))
                for b in range(B) for k in first.sizes[b].tolist() if k > 0}
    assert alone == twice == B + len(distinct)
    with pytest.raises(TypeError, match="non-empty mapping"):
        ev.evaluate_many(enc, scores)
    with pytest.raises(TypeError, match="non-empty str"):
        ev.evaluate_many(enc, {0: scores})
