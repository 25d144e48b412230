"""Adversarial attention (Jain & Wallace 2019, §4.3, ``AdversaryMulti`` and ``plot_multi_adversarial``).

Per instance, Jain & Wallace optimise ``K = 5`` candidate attention distributions jointly with Adam (lr 0.01,
AMSGrad, 500 steps) over log-attention initialised at ``log(uniform) + N(0, 3²)`` noise, with masked positions at −∞,
minimising

    Σ_k [ −JSD(α_k, α) + 500 · ReLU(|Δŷ_k|₁ − 0.01) ] − mean_{k,k'} JSD(α_k, α_{k'})

(the last mean over all K² ordered pairs, diagonal included; summed over the instances of a batch, which optimises
each instance independently). Then the original α is added as candidate K+1, candidates whose output change exceeds
0.05 are discarded, and the maximum JSD among the rest is reported. JW's ``|Δσ(ŷ)|₁`` for a one-output binary model
is the TVD of the output distributions; attnfaith uses the TVD for every model (``epsilon`` in the optimiser,
``accept`` for the selection). JSD is :func:`attnfaith.metrics.jsd` (natural log, exact; JW add 1e-10 and clip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from attnfaith._inputs import call_model, probs_of
from attnfaith._state import model_guard
from attnfaith.attention import AttentionTap
from attnfaith.evaluators._base import Evaluator, max_attention_of
from attnfaith.evaluators.result import Result, bins_markdown
from attnfaith.evaluators.selection import check_layer, check_query, query_index, resolve_query
from attnfaith.metrics import bin_summary, jsd, tvd
from attnfaith.nn import masked_softmax
from attnfaith.results import fmt_number
from attnfaith.engine import report_variants
from attnfaith.seeding import check_seed, example_generators, randn_at

__all__ = ["AdversarialAttention", "AdversarialAttentionResult"]


@dataclass
class AdversarialAttentionResult(Result):
    """The most different attention found that keeps the output within ``accept``.

    Attributes:
        jsd: ``[B]`` JSD (nats, ≤ ln 2) between the reported adversarial row and the original, mean over heads
            (0 when only the original was accepted).
        tvd: ``[B]`` TVD between the output with the adversarial attention and the original output (≤ ``accept``).
        weights: ``[B, H, Tk]`` the reported adversarial attention of the optimised query row, per head.
        original: ``[B, H, Tk]`` the original attention of that row.
        query: LongTensor ``[B]``, the optimised query row.
        chosen: LongTensor ``[B]``, the reported candidate (``K`` = the original, none accepted).
        candidate_jsd, candidate_tvd: ``[B, K]`` every optimised candidate's JSD and TVD after the last step.
        accepted: BoolTensor ``[B, K]``: candidate TVD ≤ ``accept``.
        max_attention: ``[B]`` the largest original weight on an item (mean over heads of the row).
        predicted: ``[B]`` the predicted class.
        layer: the layer (non-negative index in the tap's call order).
        accept: the TVD threshold of the selection.
        items: BoolTensor ``[B, T]``, the items (:meth:`records` cuts ``weights`` and ``original`` to them when the
            keys are the input tokens); None when not recorded.
    """

    layout: ClassVar[dict[str, str]] = {
        "jsd": "row", "tvd": "row", "weights": "key", "original": "key", "query": "row", "chosen": "row",
        "candidate_jsd": "row", "candidate_tvd": "row", "accepted": "row", "max_attention": "row",
        "predicted": "row", "items": "token",
    }

    jsd: torch.Tensor
    tvd: torch.Tensor
    weights: torch.Tensor
    original: torch.Tensor
    query: torch.Tensor
    chosen: torch.Tensor
    candidate_jsd: torch.Tensor
    candidate_tvd: torch.Tensor
    accepted: torch.Tensor
    max_attention: torch.Tensor
    predicted: torch.Tensor
    layer: int
    accept: float = 0.05
    items: torch.Tensor | None = None

    def summary(self) -> dict[str, dict[str, float]]:
        """Reported JSD per max-attention bin (Jain & Wallace's adversarial violin plot, as numbers)."""
        return bin_summary(self.jsd, self.max_attention, "jsd")

    def to_markdown(self) -> str:
        s = self.summary()["all"]
        head = (f"Adversarial attention, layer {self.layer}: max JSD with output TVD ≤ {self.accept:g} "
                f"(Jain & Wallace 2019, §4.3); mean JSD {fmt_number(s['jsd_mean'])} (ln 2 = {math.log(2):.3f})")
        return bins_markdown(head, self.summary(), "jsd")


def _positive(value: Any, name: str, integer: bool = False, allow_zero: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise TypeError(f"{name} must be a {'int' if integer else 'number'}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


class AdversarialAttention(Evaluator):
    """Jain & Wallace's adversarial attention search (see the module docstring for their code's definition).

    What is optimised: for each example ``b``, ``K = n_candidates`` candidates, each one distribution **per head**
    over the keys of **one query row** ``q_b`` of layer ``layer`` — the row the prediction is read from (``query``:
    ``"auto"`` = the first real token, [CLS], for bidirectional self-attention, the last real token for causal and
    cross-attention layers; the only row of one-query attention such as JW's additive attention). Parameters are
    log-weights ``θ[b, k, h, :]``; ``α_k[h] = softmax(θ[b, k, h])`` over the keys the original row attends to
    (``α[h, j] > 0``: padding, masked and future keys stay at 0). Every other query row keeps its original weights.
    The variant forward replaces the layer's attention by this (tap ``"replace"``), the gradient flows through it to
    ``θ`` only (the model's parameters are frozen and restored).

    Loss per example (summed over examples; Adam with AMSGrad, ``lr``, ``steps`` steps):

        Σ_k [ −JSD_k + penalty · ReLU(TVD(p_k, p) − epsilon) ] − (1/K²) Σ_{k,k'} JSD(α_k, α_{k'}),
        JSD_k = (1/H) Σ_h JSD(α_k[h], α[h])

    After the last step each candidate's ``JSD_k`` and TVD are recomputed; the original (JSD 0, TVD 0) is added,
    candidates with TVD > ``accept`` are discarded, and the one with the largest ``JSD_k`` is reported: its
    ``JSD_k`` (mean over heads of the JSD of the optimised row), TVD and weights ``[H, Tk]``.

    Initialisation: ``θ = log(uniform over the row's keys) + 3·N(0, 1)``, the normal draws made per example on the
    CPU from its own generator ``torch.Generator().manual_seed(example_seed(seed, example_ids[b]))``
    (:mod:`attnfaith.seeding`): ``torch.randn(K, H, k_b)`` for its ``k_b`` real keys (the attention mask's tokens
    when the keys are the inputs, else the keys with a non-zero weight), in position order. So results do not
    depend on the batch-mates, the chunking, the padding or the device.
    Examples are optimised in chunks of ``max_examples_per_batch // K`` examples (each forward holds their
    ``K`` candidates); examples never interact, so chunking does not change the result.

    Args:
        model: any model :class:`attnfaith.AttentionTap` reaches.
        layer: the attention layer (call order; -1 the last).
        epsilon: the TVD allowed inside the optimiser (JW: 0.01).
        accept: the TVD threshold of the selection (JW: 0.05).
        n_candidates: K (JW: 5).
        steps: Adam steps (JW: 500).
        lr: Adam learning rate (JW: 0.01, AMSGrad).
        seed: seed of the initial noise.
        query: the optimised row: ``"auto"``, ``"cls"``, ``"last"`` or an int.
        penalty: weight of the TVD hinge (JW: 500).
        max_examples_per_batch, memory_budget: see :class:`attnfaith.evaluators.Evaluator`.
        progress: a tqdm progress bar over the optimisation steps.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: int = -1,
        epsilon: float = 0.01,
        accept: float = 0.05,
        n_candidates: int = 5,
        steps: int = 500,
        lr: float = 0.01,
        seed: int = 0,
        *,
        query: Any = "auto",
        penalty: float = 500.0,
        max_examples_per_batch: int | None = None,
        memory_budget: int | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(model, max_examples_per_batch=max_examples_per_batch, memory_budget=memory_budget)
        self.progress = bool(progress)
        self.layer = check_layer(layer)
        self.epsilon = float(_positive(epsilon, "epsilon", allow_zero=True))
        self.accept = float(_positive(accept, "accept", allow_zero=True))
        self.n_candidates = _positive(n_candidates, "n_candidates", integer=True)
        self.steps = _positive(steps, "steps", integer=True, allow_zero=True)
        self.lr = float(_positive(lr, "lr"))
        self.penalty = float(_positive(penalty, "penalty", allow_zero=True))
        self.seed = check_seed(seed)
        self.query = check_query(query, single_row=True)

    def evaluate(
        self,
        inputs: Any,
        attributions: Any = None,
        *,
        target: Any = None,
        additional_forward_args: Any = None,
        max_examples_per_batch: int | None = None,
        mask: torch.Tensor | None = None,
        tokenizer: Any = None,
        special_ids: Iterable[int] | None = None,
        example_ids: Any = None,
    ) -> AdversarialAttentionResult:
        """Run the search (see :meth:`Evaluator.evaluate`); ``target`` is not used (the TVD covers every class)
        and ``attributions`` must be None. ``example_ids``: the rows' global example ids (LongTensor or sequence
        ``[B]``; default ``0..B-1``), which seed each row's initialisation."""
        if attributions is not None:
            raise ValueError("attributions: AdversarialAttention optimises the model's own attention and takes no "
                             "attributions (leave it None)")
        batch = self.prepare(inputs, additional_forward_args, mask=mask, tokenizer=tokenizer, special_ids=special_ids)
        runner = self.runner_for(max_examples_per_batch)
        model = self.model
        B, T = batch.input_ids.shape
        gens = example_generators(self.seed, example_ids, B)
        K = self.n_candidates
        with model_guard(model), AttentionTap(model, capture=[self.layer]) as tap:
            for p in model.parameters():  # gradients w.r.t. the candidates only; model_guard restores the flags
                p.requires_grad_(False)
            with torch.no_grad():
                logits = call_model(model, batch)
            layer = tap.resolve_layer(self.layer)
            att = tap.attention(layer).detach()  # [B, H, Tq, Tk]
            query = resolve_query(self.query, tap.layers, [layer])
            tap.capture = None
            p0 = probs_of(logits).detach()
            H, Tq, Tk = att.shape[1:]
            q = query_index(query, Tq, batch.attention_mask)
            ar = torch.arange(B, device=batch.device)
            orig = att[ar, :, q, :].float()  # [B, H, Tk]
            support = orig > 0
            row_sel = torch.zeros(B, 1, 1, Tq, 1, dtype=torch.bool, device=batch.device)
            row_sel[ar, 0, 0, q, 0] = True

            keys = batch.attention_mask.bool() if Tk == T else support.any(dim=1)  # [B, Tk]: the row's real keys
            noise = randn_at(keys, gens, lead=(K, H)).to(batch.device)  # [B, K, H, Tk]
            n_keys = support.sum(dim=-1, keepdim=True).clamp_min(1).float()
            theta0 = (-torch.log(n_keys))[:, None] + 3.0 * noise  # log(uniform) + N(0, 3²)

            per_chunk = max(1, runner.chunk_size(T, batch.device) // K)
            chunks = []
            for start in range(0, B, per_chunk):
                idx = torch.arange(start, min(start + per_chunk, B), device=batch.device)
                chunks.append(self._optimise(tap, layer, batch, idx, theta0.index_select(0, idx), orig, support,
                                             att, row_sel, p0))
            cand_w = torch.cat([c[0] for c in chunks])  # [B, K, H, Tk]
            cand_jsd = torch.cat([c[1] for c in chunks])  # [B, K]
            cand_tvd = torch.cat([c[2] for c in chunks])  # [B, K]
            tap.clear()

        accepted = cand_tvd <= self.accept
        # candidate K is the original (JSD 0, TVD 0), always accepted
        all_jsd = torch.cat([torch.where(accepted, cand_jsd, torch.full_like(cand_jsd, -1.0)),
                             torch.zeros(B, 1, dtype=cand_jsd.dtype, device=cand_jsd.device)], dim=1)
        all_tvd = torch.cat([cand_tvd, torch.zeros(B, 1, dtype=cand_tvd.dtype, device=cand_tvd.device)], dim=1)
        all_w = torch.cat([cand_w, orig[:, None]], dim=1)
        # ties (e.g. several candidates at JSD 0) go to the lowest index; the original only wins when nothing else
        # was accepted with JSD > 0
        chosen = all_jsd.argmax(dim=1)
        return AdversarialAttentionResult(
            jsd=all_jsd[ar, chosen].clamp_min(0.0),
            tvd=all_tvd[ar, chosen],
            weights=all_w[ar, chosen],
            original=orig,
            query=q,
            chosen=chosen,
            candidate_jsd=cand_jsd,
            candidate_tvd=cand_tvd,
            accepted=accepted,
            max_attention=max_attention_of(att, query, batch),
            predicted=p0.argmax(dim=-1),
            layer=layer,
            accept=self.accept,
            items=batch.items.clone(),
        )

    def _optimise(self, tap, layer, batch, idx, theta0, orig, support, att, row_sel, p0):
        """Optimise the candidates of examples ``idx``; returns (weights [b, K, H, Tk], JSD [b, K], TVD [b, K])."""
        model = self.model
        K = self.n_candidates
        b = idx.shape[0]
        H, Tq, Tk = att.shape[1:]
        sub = batch.index_rows(idx.repeat_interleave(K))
        a_orig = orig.index_select(0, idx)[:, None]  # [b, 1, H, Tk]
        sup = support.index_select(0, idx)[:, None]  # [b, 1, H, Tk]
        full = att.index_select(0, idx)[:, None]  # [b, 1, H, Tq, Tk]
        rows = row_sel.index_select(0, idx)  # [b, 1, 1, Tq, 1]
        p_ref = p0.index_select(0, idx)[:, None]  # [b, 1, C]

        def forward(theta: torch.Tensor):
            alpha = masked_softmax(theta, sup)  # [b, K, H, Tk]
            value = torch.where(rows, alpha[:, :, :, None, :].to(full.dtype), full)  # [b, K, H, Tq, Tk]
            tap.clear()
            tap.intervene("replace", value.reshape(b * K, H, Tq, Tk), layers=layer)
            probs = probs_of(call_model(model, sub)).view(b, K, -1)
            out_tvd = tvd(probs, p_ref)  # [b, K]
            div = jsd(alpha, a_orig).mean(dim=-1)  # [b, K]: mean over heads
            return alpha, div, out_tvd

        theta = theta0.clone().requires_grad_(True)
        if self.steps:
            opt = torch.optim.Adam([theta], lr=self.lr, amsgrad=True)
            steps = range(self.steps)
            if self.progress:
                try:
                    from tqdm.auto import tqdm

                    steps = tqdm(steps, desc="adversarial attention")
                except ImportError:  # pragma: no cover
                    pass
            for _ in steps:
                report_variants(b * K)  # one forward and backward of the b·K candidates per step (progress)
                with torch.enable_grad():
                    alpha, div, out_tvd = forward(theta)
                    cross = jsd(alpha[:, :, None], alpha[:, None, :]).mean(dim=-1)  # [b, K, K], mean over heads
                    loss = (-div + self.penalty * torch.relu(out_tvd - self.epsilon)).sum() \
                        - cross.mean(dim=(1, 2)).sum()
                    (grad,) = torch.autograd.grad(loss, theta)
                theta.grad = grad
                opt.step()
                theta.grad = None
        with torch.no_grad():
            alpha, div, out_tvd = forward(theta.detach())
        return alpha.detach(), div.detach().float(), out_tvd.detach().float()
