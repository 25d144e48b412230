"""The tests' and benchmarks' oracles: every evaluator's definition as a plain Python loop, one forward per variant,
each variant built by hand and run alone (no engine, no packing, no length buckets, no prefix cache, no readout
path): :func:`plain_erasure_flip` (:class:`attnfaith.ErasureFlip`), :func:`plain_permutation_tvd`
(:class:`attnfaith.PermutationTVD`), :func:`plain_topk_probabilities` (:class:`attnfaith.Comprehensiveness`,
``Sufficiency``, ``LogOdds``), :func:`plain_soft_probabilities` (the soft metrics) and :func:`plain_aopc_bounds`
(:class:`attnfaith.NormalizedAOPC`'s exact bounds)."""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Any

import torch

__all__ = ["plain_erasure_flip", "plain_permutation_tvd", "plain_topk_probabilities", "plain_soft_probabilities",
           "plain_aopc_bounds"]


def plain_erasure_flip(evaluator, inputs: Any, attributions: Any = None, *, target: Any = None,
                       additional_forward_args: Any = None, mask: Any = None, tokenizer: Any = None,
                       special_ids: Any = None, name: str | None = None):
    """:meth:`attnfaith.ErasureFlip.evaluate` (full curve) as a plain Python loop: per example, one forward of the
    original and one per removal ``k = 1..n_b`` (with the evaluator's ``steps``: one per distinct count
    ``min(n_b, max(1, ceil(f · n_b)))``, ``f · n_b`` rounded to 9 decimals, written out here), the items removed in
    descending score order (ties: lower position first), each forward alone. The rankings, the erasure of one row and
    the result's statistics are the evaluator's own; only the batching engine (packing, chunks, prefix cache, length
    buckets) and the readout path are left out."""
    from attnfaith._state import model_guard
    from attnfaith.evaluators._base import check_items
    from attnfaith.perturb import erase_id

    ef = evaluator
    attributions = "attention" if attributions is None else attributions
    batch = ef.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
    check_items(batch, "inputs")
    B, T = batch.input_ids.shape
    with model_guard(ef.model):
        layers, query = ef._layers_and_query(batch, attributions)
        ranking = ef._ranking(attributions, batch, target, layers, query)
        replacement = erase_id(ef.model, ef.erase, tokenizer) if ef.level == "token" else None
        R, never = len(ranking.scores), T + 1
        curve = torch.full((R, B, T + 1), float("nan"))
        first = torch.full((R, B), never, dtype=torch.long)
        pred = torch.zeros(B, dtype=torch.long)
        tap = ef._tap() if ef.level == "attention" else None
        with torch.inference_mode(), (tap if tap is not None else contextlib.nullcontext()):
            for b in range(B):
                row = batch.index_rows(torch.tensor([b], device=batch.device))
                p = ef._forward(row, None, tap, layers, replacement)[0].cpu()
                c = int(p.argmax())
                pred[b] = c
                positions = [t for t in range(T) if bool(batch.items[b, t])]
                n_b = len(positions)
                counts = range(1, n_b + 1) if ef.steps is None else sorted(
                    {min(n_b, max(1, math.ceil(round(f * n_b, 9)))) for f in ef.steps})
                for r, scores in enumerate(ranking.scores):
                    s = scores[b].tolist()
                    order = sorted(positions, key=lambda t: (-s[t], t))
                    curve[r, b, 0] = p[c]
                    for k in counts:
                        erase = torch.zeros(1, T, dtype=torch.bool, device=batch.device)
                        erase[0, order[:k]] = True
                        q = ef._forward(row, erase, tap, layers, replacement)[0].cpu()
                        curve[r, b, k] = q[c]
                        if int(q.argmax()) != c and int(first[r, b]) == never:
                            first[r, b] = k
    d = batch.device
    return ef._result(batch, ranking, pred.to(d), curve.to(d), first.to(d), name)


def plain_permutation_tvd(evaluator, inputs: Any, *, additional_forward_args: Any = None, mask: Any = None,
                          tokenizer: Any = None, special_ids: Any = None,
                          example_ids: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tvd [B, n], permutations)`` of :meth:`attnfaith.PermutationTVD.evaluate` as a plain loop: the same
    permutations, built here row by row (row ``b``: ``torch.rand(n, [H,] k_b)`` from
    ``torch.Generator().manual_seed(example_seed(evaluator.seed, example_ids[b]))``, its ``k_b`` items put in the
    order of those draws), then one complete forward per example and permutation, alone, with the tap's
    ``"permute"`` intervention on the evaluator's layer; NaN for a row without items."""
    from attnfaith._inputs import call_model, probs_of
    from attnfaith._state import model_guard
    from attnfaith.attention import AttentionTap
    from attnfaith.metrics import tvd
    from attnfaith.seeding import check_example_ids, example_seed

    pt = evaluator
    batch = pt.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
    model, n = pt.model, pt.n_permutations
    B = batch.input_ids.shape[0]
    with model_guard(model), torch.inference_mode(), AttentionTap(model, capture=[pt.layer]) as tap:
        p0 = probs_of(call_model(model, batch))
        layer = tap.resolve_layer(pt.layer)
        heads = tap.attention(layer).shape[1] if pt.per_head else None
        tap.capture = None
        ids = check_example_ids(example_ids, B)
        T = batch.input_ids.shape[1]
        lead = (n,) if heads is None else (n, heads)
        perms = torch.arange(T).repeat(B, *lead, 1)  # [B, n, (H,) T]
        items = batch.items.cpu()
        for b in range(B):
            real = items[b].nonzero().flatten()
            g = torch.Generator().manual_seed(example_seed(pt.seed, ids[b]))
            noise = torch.rand(*lead, real.numel(), generator=g)
            for idx in itertools.product(*(range(s) for s in lead)):
                perms[(b, *idx)][real] = real[noise[idx].argsort()]
        perms = perms.to(batch.device)
        values = torch.full((B, n), float("nan"))
        for b in range(B):
            row = batch.index_rows(torch.tensor([b], device=batch.device))
            for i in range(n):
                iv = tap.intervene("permute", perms[b, i][None], layers=layer)
                try:
                    values[b, i] = tvd(probs_of(call_model(model, row)), p0[b : b + 1]).float().cpu()[0]
                finally:
                    tap.remove(iv)
    return values.masked_fill((batch.n_items == 0).cpu()[:, None], float("nan")), perms


def _plain_setup(evaluator, inputs: Any, attributions: Any, mask: Any, tokenizer: Any, example_ids: Any = None):
    """The evaluator's batch and ranking scores (list of ``[B, T]``) on the CPU-side plain path."""
    from attnfaith.evaluators.rankings import resolve_ranking
    from attnfaith.evaluators.selection import resolve_attention_layers

    batch = evaluator.prepare(inputs, None, mask=mask, tokenizer=tokenizer)
    level = getattr(evaluator, "level", "token")
    needs = level == "attention" or (isinstance(attributions, str) and attributions != "random")
    layers, query = (resolve_attention_layers(evaluator.model, batch, evaluator.layer, evaluator.heads,
                                              evaluator.modules, evaluator.query) if needs else (None, "cls"))
    ranking = resolve_ranking(attributions, evaluator.model, batch, None, layers=layers, heads=evaluator.heads,
                              query=query, n_random=evaluator.n_random, seed=evaluator.seed, example_ids=example_ids)
    return batch, ranking, layers


def _plain_variant_prob(model, batch, b: int, erase: list[int], erase_mode: Any, target: int, *, tap=None,
                        layers=None, heads=None, scale: list[float] | None = None) -> float:
    """p(target) of row ``b`` alone, without its padding, with the positions ``erase`` erased by hand: deleted
    (``erase_mode`` None), replaced by the id ``erase_mode``, zeroed in the attention (``tap`` given), or with the
    input embedding of position ``t`` multiplied by ``scale[t]``."""
    from attnfaith._inputs import call_model, probs_of
    from attnfaith.attention.model_facts import input_embedding_module

    real = [t for t in range(batch.length) if int(batch.attention_mask[b, t]) != 0]
    gone = set(erase)
    keep = [t for t in real if not (erase_mode is None and tap is None and t in gone)]
    idx = torch.tensor(keep, device=batch.device)
    row = batch.index_rows(torch.tensor([b], device=batch.device))
    ids = row.input_ids[:, idx].clone()
    if erase_mode is not None and tap is None:
        for j, t in enumerate(keep):
            if t in gone:
                ids[0, j] = int(erase_mode)
    sub = row.with_tokens(ids, row.attention_mask[:, idx], row.items[:, idx],
                          {k: v[:, idx] for k, v in row.token_args.items()})
    handle = iv = None
    if scale is not None:
        factor = torch.tensor([[scale[t] for t in keep]], device=batch.device)
        handle = input_embedding_module(model).register_forward_hook(
            lambda mod, args, out: out * factor[..., None].to(out.dtype))
    if tap is not None:
        zero = torch.zeros(1, len(keep), dtype=torch.bool, device=batch.device)
        for j, t in enumerate(keep):
            zero[0, j] = t in gone
        iv = tap.intervene("zero", zero, layers=tuple(layers), heads=heads)
    try:
        return float(probs_of(call_model(model, sub))[0, target])
    finally:
        if handle is not None:
            handle.remove()
        if iv is not None:
            tap.remove(iv)


def plain_topk_probabilities(evaluator, inputs: Any, attributions: Any, *, mask: Any = None, tokenizer: Any = None,
                             example_ids: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(prediction [B], p0 [B], pk [R, B, K])`` of :class:`attnfaith.Comprehensiveness` / ``Sufficiency`` /
    ``LogOdds`` as a plain loop: per example, order and bin, ``k = ⌈f·n⌉`` (``math.ceil`` on the exact fraction, or
    ``math.floor`` for ``rounding="floor"``) items taken by ``sorted(key=(-score, position))``, and one forward of
    that row alone, without padding, with those items (or every other item, for sufficiency) erased by hand. NaN for
    an empty bin."""
    import math
    from fractions import Fraction

    from attnfaith._inputs import call_model, probs_of
    from attnfaith._state import model_guard
    from attnfaith.attention import AttentionTap
    from attnfaith.perturb import erase_id

    ev = evaluator
    model = ev.model
    with model_guard(model), torch.inference_mode():
        batch, ranking, layers = _plain_setup(ev, inputs, attributions, mask, tokenizer, example_ids)
        B = batch.size
        mode = erase_id(model, ev.erase, tokenizer) if ev.level == "token" else None
        R, K = len(ranking.scores), len(ev.fractions)
        pred = torch.zeros(B, dtype=torch.long)
        p0 = torch.zeros(B)
        pk = torch.full((R, B, K), float("nan"))
        tap = AttentionTap(model, capture=None, modules=ev.modules) if ev.level == "attention" else None
        with (tap if tap is not None else contextlib.nullcontext()):
            for b in range(B):
                row = batch.index_rows(torch.tensor([b], device=batch.device))
                p = probs_of(call_model(model, row))[0]
                c = int(p.argmax())
                pred[b], p0[b] = c, float(p[c])
                positions = [t for t in range(batch.length) if bool(batch.items[b, t])]
                n = len(positions)
                for r, scores in enumerate(ranking.scores):
                    s = scores[b].tolist()
                    order = sorted(positions, key=lambda t: (-s[t], t))
                    for j, f in enumerate(ev.fractions):
                        exact = Fraction(str(f)) * n
                        k = min(n, math.ceil(exact) if ev.rounding == "ceil" else math.floor(exact))
                        if k == 0:
                            continue
                        top = order[:k]
                        erase = [t for t in positions if t not in top] if ev.keep else top
                        pk[r, b, j] = _plain_variant_prob(model, batch, b, erase, mode, c, tap=tap, layers=layers,
                                                          heads=ev.heads)
    return pred, p0, pk


def plain_soft_probabilities(evaluator, inputs: Any, attributions: Any, *, mask: Any = None, tokenizer: Any = None,
                             example_ids: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(p0 [B], p_variant [R, B], p_empty [B])`` of :class:`attnfaith.SoftComprehensiveness` /
    ``SoftSufficiency`` as a plain loop: the scores min-max normalised over the example's items in Python, and one
    forward per example and order, alone and unpadded, with a hook multiplying the input embedding of each item by
    ``1 − s`` (comprehensiveness) or ``s`` (sufficiency), and one with every item's embedding multiplied by 0."""
    from attnfaith._inputs import call_model, probs_of
    from attnfaith._state import model_guard

    ev = evaluator
    model = ev.model
    comp = ev.metric == "soft_comprehensiveness"
    with model_guard(model), torch.inference_mode():
        batch, ranking, _ = _plain_setup(ev, inputs, attributions, mask, tokenizer, example_ids)
        B, T = batch.input_ids.shape
        R = len(ranking.scores)
        p0, pe, pv = torch.zeros(B), torch.zeros(B), torch.zeros(R, B)
        for b in range(B):
            row = batch.index_rows(torch.tensor([b], device=batch.device))
            p = probs_of(call_model(model, row))[0]
            c = int(p.argmax())
            p0[b] = float(p[c])
            positions = [t for t in range(T) if bool(batch.items[b, t])]
            pe[b] = _plain_variant_prob(model, batch, b, [], None, c,
                                        scale=[0.0 if t in positions else 1.0 for t in range(T)])
            for r, scores in enumerate(ranking.scores):
                s = [float(scores[b, t]) for t in positions]
                lo, hi = min(s), max(s)
                w = {t: ((v - lo) / (hi - lo) if hi > lo else 1.0) for t, v in zip(positions, s)}
                scale = [((1.0 - w[t]) if comp else w[t]) if t in w else 1.0 for t in range(T)]
                pv[r, b] = _plain_variant_prob(model, batch, b, [], None, c, scale=scale)
    return p0, pv, pe


def plain_aopc_bounds(evaluator, inputs: Any, *, mask: Any = None, tokenizer: Any = None,
                      beam: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lower [B], upper [B])`` of :meth:`attnfaith.NormalizedAOPC.bounds` as a plain loop: per example, one
    forward (alone, unpadded) per subset of items that is needed, then either every order of the items enumerated
    (``itertools.permutations``: ``beam=False``, for a few items only) or Edin et al.'s beam search written with
    Python lists (``beam=True``, ``evaluator.beam_size``; ties: the first candidate in (member, item) order)."""
    from attnfaith._inputs import call_model, probs_of
    from attnfaith._state import model_guard
    from attnfaith.perturb import erase_id

    ev = evaluator
    model = ev.model
    with model_guard(model), torch.inference_mode():
        batch = ev.prepare(inputs, None, mask=mask, tokenizer=tokenizer)
        mode = erase_id(model, ev.erase, tokenizer)
        B = batch.size
        lower, upper = torch.zeros(B), torch.zeros(B)
        for b in range(B):
            row = batch.index_rows(torch.tensor([b], device=batch.device))
            p = probs_of(call_model(model, row))[0]
            c = int(p.argmax())
            positions = [t for t in range(batch.length) if bool(batch.items[b, t])]
            n = len(positions)
            cache: dict[frozenset, float] = {}

            def drop(S: frozenset) -> float:
                if S not in cache:
                    cache[S] = float(p[c]) - _plain_variant_prob(model, batch, b, sorted(S), mode, c)
                return cache[S]

            if not beam:
                totals = [sum(drop(frozenset(o[:k])) for k in range(1, n + 1))
                          for o in itertools.permutations(positions)]
                lower[b], upper[b] = min(totals) / n, max(totals) / n
                continue
            for sign, out in ((1.0, upper), (-1.0, lower)):
                members = [((), 0.0)]
                for _ in range(n):
                    cands = [(m + (t,), total + drop(frozenset(m + (t,))))
                             for m, total in members for t in positions if t not in m]
                    cands.sort(key=lambda x: -sign * x[1])  # stable: ties keep the (member, item) order
                    members = cands[: ev.beam_size]
                out[b] = members[0][1] / n
    return lower, upper
