"""The papers' reference classifiers: a BiLSTM and an "Average" encoder with additive (tanh) attention.

These follow Jain & Wallace (2019), ``model/modules/Encoder.py`` / ``Decoder.py`` / ``Attention.py`` (and Wiegreffe &
Pinter's fork, ``EncoderAverage`` and the ``frozen`` / ``pre-loaded`` attention variants):

* **encoder**: embedding -> bidirectional LSTM (``hidden_dim`` per direction, packed sequences so padding never
  leaks into a real token's state) for :class:`BiLSTMAttentionClassifier`; embedding -> per-token ``Linear + tanh``
  (no context) for :class:`AverageAttentionClassifier`;
* **attention**: additive ``score_t = v . tanh(W h_t + b)`` (JW ``TanhAttention``: ``W`` maps the encoder output to
  half its size, so 256 -> 128 for the default BiLSTM, ``v`` has no bias) or scaled dot ``w . h_t / sqrt(H)``
  (``attention="dot"``, JW ``DotAttention``); the distribution is computed by an :class:`attnfaith.nn.AttentionSoftmax`
  module (``model.attention_softmax``) and reaches the prediction *only* through that module's output, so
  :class:`attnfaith.AttentionTap` records exactly what the model uses and its interventions act on the prediction;
* **decoder**: ``context = sum_t alpha_t h_t`` -> ``Linear`` -> logits ``[B, num_labels]``.

**Which tokens attention covers.** Jain & Wallace's ``BatchHolder`` masks ``<SOS>``, ``<EOS>`` and padding before the
softmax (mask ``[1] + [0]*(L-2) + [1]*(pad+1)``), so attention covers the real words only. Here the ``attention_mask``
passed to ``forward`` marks non-pad tokens (what :meth:`attnfaith.reference.vocabulary.Vocabulary.encode` returns)
and the model *additionally* removes every id in ``special_token_ids`` (default ``(0, 2, 3)`` = ``<pad>``,
``<sos>``, ``<eos>`` of :class:`~attnfaith.reference.vocabulary.Vocabulary`) from the attention mask. The LSTM still
reads SOS/EOS (as in JW); only the attention excludes them. Attention is therefore a distribution over real words: it
sums to 1 over them and is exactly 0 on specials and padding. A row without any real word gets all-zero attention (the context is 0, never NaN).

Differences from the original code (documented choices):

* JW's binary models have one sigmoid output; these have ``num_labels`` logits (softmax), ``num_labels=2`` for binary
  tasks. ``softmax(logits)[:, 1]`` plays the role of JW's ``sigmoid(y)``.
* Padding must be on the right (as JW's batches are); a left-padded ``attention_mask`` raises ``ValueError``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnfaith.nn import AttentionSoftmax

__all__ = [
    "BiLSTMAttentionClassifier", "AverageAttentionClassifier", "ReferenceAttentionClassifier", "REFERENCE_ENCODERS",
    "build_reference_model",
]


class _TanhAttentionScorer(nn.Module):
    """JW ``TanhAttention`` scores: ``v . tanh(W h_t + b)`` (``attn1``: Linear(H, A), ``attn2``: Linear(A, 1, bias=False))."""

    def __init__(self, in_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.attn1 = nn.Linear(in_dim, attention_dim)
        self.attn2 = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.attn2(torch.tanh(self.attn1(hidden))).squeeze(-1)


class _DotAttentionScorer(nn.Module):
    """JW ``DotAttention`` scores: ``w . h_t / sqrt(H)``."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.attn1 = nn.Linear(in_dim, 1, bias=False)
        self.scale = 1.0 / math.sqrt(in_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.attn1(hidden).squeeze(-1) * self.scale


class ReferenceAttentionClassifier(nn.Module):
    """Shared machinery of the reference models (embedding, attention, decoder); subclasses define the encoder.

    Args:
        vocab_size: number of rows of the embedding.
        num_labels: number of output logits.
        embed_dim: embedding size (taken from ``embeddings`` when those are given).
        hidden_dim: encoder size (per direction for the BiLSTM; the projection size for the Average encoder).
        attention: ``"tanh"`` (additive, JW's default and the one in their tables) or ``"dot"`` (scaled dot).
        pad_token_id: the padding id (``padding_idx`` of the embedding; ``attention_mask`` defaults to ``ids != pad``).
        special_token_ids: ids never attended (default ``<pad>``, ``<sos>``, ``<eos>`` of
            :class:`attnfaith.reference.vocabulary.Vocabulary`).
        uniform_attention: freeze attention to the uniform distribution over real tokens (Wiegreffe & Pinter's
            ``--attention frozen`` baseline); the scorer is then unused.
        embeddings: optional ``[vocab_size, embed_dim]`` initial embedding matrix (tensor or array).
        freeze_embeddings: do not train the embedding.
        dropout: dropout on the embeddings and on the context vector (0 as in JW).
        attention_dim: hidden size of the tanh attention; default ``encoder_output_size // 2`` as JW (128 for the
            default BiLSTM).
    """

    def __init__(
        self,
        vocab_size: int,
        num_labels: int = 2,
        embed_dim: int = 300,
        hidden_dim: int = 128,
        attention: str = "tanh",
        pad_token_id: int = 0,
        special_token_ids: Sequence[int] = (0, 2, 3),
        uniform_attention: bool = False,
        embeddings=None,
        freeze_embeddings: bool = False,
        dropout: float = 0.0,
        attention_dim: int | None = None,
    ) -> None:
        super().__init__()
        if attention not in ("tanh", "dot"):
            raise ValueError(f"attention must be 'tanh' or 'dot', got {attention!r}")
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        if embeddings is not None:
            weight = torch.as_tensor(embeddings, dtype=torch.float32)
            if weight.dim() != 2 or weight.shape[0] != vocab_size:
                raise ValueError(
                    f"embeddings must have shape [vocab_size={vocab_size}, embed_dim], got {tuple(weight.shape)}"
                )
            embed_dim = int(weight.shape[1])
        self.vocab_size = int(vocab_size)
        self.num_labels = int(num_labels)
        self.embed_dim = int(embed_dim)
        self.hidden_dim = int(hidden_dim)
        self.attention_type = attention
        self.pad_token_id = int(pad_token_id)
        self.special_token_ids = tuple(int(i) for i in special_token_ids)
        self.uniform_attention = bool(uniform_attention)

        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_token_id)
        if embeddings is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(weight)
        if freeze_embeddings:
            self.embedding.weight.requires_grad_(False)
        self.dropout = nn.Dropout(dropout)

        self._build_encoder()
        out = self.encoder_output_size
        if attention == "tanh":
            self.attention_scorer = _TanhAttentionScorer(out, attention_dim or max(1, out // 2))
        else:
            self.attention_scorer = _DotAttentionScorer(out)
        self.attention_softmax = AttentionSoftmax(uniform=self.uniform_attention)
        self.classifier = nn.Linear(out, self.num_labels)

    # -- to be provided by subclasses -------------------------------------------------------------------------
    encoder_output_size: int

    def _build_encoder(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding (for gradient x input and Captum's ``LayerIntegratedGradients``)."""
        return self.embedding

    def _token_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq_len], got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            return input_ids != self.pad_token_id
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(input_ids.shape)}"
            )
        mask = attention_mask.to(device=input_ids.device).bool()
        if mask.shape[1] > 1 and (mask[:, 1:] & ~mask[:, :-1]).any():
            raise ValueError("reference models need right padding: attention_mask has a 0 before a 1 in some row")
        return mask

    def attention_mask_for(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Boolean ``[B, T]``: the positions attention may cover (non-pad and not in ``special_token_ids``)."""
        mask = self._token_mask(input_ids, attention_mask)
        if self.special_token_ids:
            specials = torch.tensor(self.special_token_ids, device=input_ids.device, dtype=input_ids.dtype)
            mask = mask & ~torch.isin(input_ids, specials)
        return mask

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder states ``[B, T, H]`` (zeros on padding)."""
        token_mask = self._token_mask(input_ids, attention_mask)
        lengths = token_mask.sum(dim=1)
        embedded = self.dropout(self.embedding(input_ids))
        hidden = self._encode(embedded, lengths)
        return hidden * token_mask.unsqueeze(-1).to(hidden.dtype)

    def _imposed_scores(self, weights: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """Scores whose masked softmax is ``weights`` restricted to ``attn_mask`` and renormalised (exactly)."""
        if self.uniform_attention:
            raise ValueError("attention_weights cannot be imposed on a model built with uniform_attention=True")
        if weights.shape != attn_mask.shape:
            raise ValueError(
                f"attention_weights must have shape {tuple(attn_mask.shape)} (input_ids), got {tuple(weights.shape)}"
            )
        w = weights.to(device=attn_mask.device, dtype=torch.float32)
        if not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError("attention_weights must be finite and non-negative")
        w = w * attn_mask.to(w.dtype)
        total = w.sum(dim=-1, keepdim=True)
        if ((total <= 0) & attn_mask.any(dim=-1, keepdim=True)).any():
            raise ValueError("attention_weights put no mass on the real (non-special, non-pad) tokens of some row")
        w = w / total.clamp_min(torch.finfo(w.dtype).tiny)
        # log(w), with -inf where w == 0; the clamp keeps the gradient finite (0) at zeros.
        return w.clamp_min(torch.finfo(w.dtype).tiny).log().masked_fill(w <= 0, float("-inf"))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        attention_weights: torch.Tensor | None = None,
        return_attention: bool = False,
    ):
        """Logits ``[B, num_labels]``.

        Args:
            input_ids: ``[B, T]`` token ids, right-padded.
            attention_mask: ``[B, T]``, 1 on non-pad tokens (default ``input_ids != pad_token_id``).
            attention_weights: optional ``[B, T]`` attention imposed from outside (Wiegreffe & Pinter's
                ``pre-loaded`` attention): restricted to the real tokens, renormalised, and passed through
                ``attention_softmax`` as log-weights, so the tap still sees (and may replace) it.
            return_attention: also return the attention ``[B, T]`` (``(logits, attention)``).
        """
        hidden = self.encode(input_ids, attention_mask)
        attn_mask = self.attention_mask_for(input_ids, attention_mask)
        if attention_weights is not None:
            scores = self._imposed_scores(attention_weights, attn_mask)
        else:
            scores = self.attention_scorer(hidden).float()
        alpha = self.attention_softmax(scores, attn_mask)
        # the prediction depends on attention only through ``alpha``, the AttentionSoftmax output (what the tap sees;
        # ``AttentionTap(model, detach=True)`` gives JW's gradient with attention held fixed)
        context = torch.bmm(alpha.to(hidden.dtype).unsqueeze(1), hidden).squeeze(1)
        logits = self.classifier(self.dropout(context))
        if return_attention:
            return logits, alpha
        return logits

    def attention(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention distribution ``[B, T]`` the model uses for these inputs (0 on specials and padding)."""
        return self.forward(input_ids, attention_mask, return_attention=True)[1]

    def extra_repr(self) -> str:
        return (
            f"attention={self.attention_type!r}, uniform_attention={self.uniform_attention}, "
            f"pad_token_id={self.pad_token_id}, special_token_ids={self.special_token_ids}"
        )


class BiLSTMAttentionClassifier(ReferenceAttentionClassifier):
    """Jain & Wallace's BiLSTM + additive attention classifier (``EncoderRNN`` + ``AttnDecoder``).

    embedding -> bidirectional LSTM (``hidden_dim`` per direction, packed) -> tanh attention (``AttentionSoftmax``
    over real words) -> ``sum_t alpha_t h_t`` -> Linear. See the module docstring for the masking convention and
    :class:`ReferenceAttentionClassifier` for the arguments.
    """

    def _build_encoder(self) -> None:
        self.rnn = nn.LSTM(self.embed_dim, self.hidden_dim, batch_first=True, bidirectional=True)
        self.encoder_output_size = 2 * self.hidden_dim

    def _encode(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        total = embedded.shape[1]
        packed = pack_padded_sequence(
            embedded, lengths.clamp_min(1).to("cpu"), batch_first=True, enforce_sorted=False
        )
        output, _ = self.rnn(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=total)
        return output


class AverageAttentionClassifier(ReferenceAttentionClassifier):
    """Jain & Wallace's "Average" encoder (WP ``EncoderAverage``) with additive attention.

    embedding -> per-token ``Linear(embed_dim, hidden_dim) + tanh`` (no context between tokens) -> tanh attention ->
    ``sum_t alpha_t h_t`` -> Linear. Same arguments as :class:`BiLSTMAttentionClassifier`.
    """

    def _build_encoder(self) -> None:
        self.projection = nn.Sequential(nn.Linear(self.embed_dim, self.hidden_dim), nn.Tanh())
        self.encoder_output_size = self.hidden_dim

    def _encode(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.projection(embedded)


#: the reference encoders by name (``ReplicationConfig.encoder``)
REFERENCE_ENCODERS = {"bilstm": BiLSTMAttentionClassifier, "average": AverageAttentionClassifier}


def build_reference_model(encoder: str, vocab_size: int, num_labels: int, *, embed_dim: int = 300,
                          hidden_dim: int = 128, seed: int = 0, uniform: bool = False,
                          special_token_ids: Sequence[int] = (0, 2, 3),
                          embeddings: torch.Tensor | None = None) -> ReferenceAttentionClassifier:
    """A freshly initialised reference model ``encoder`` (``"bilstm"`` or ``"average"``), weights drawn under
    ``torch.manual_seed(seed)`` with the global RNG restored; ``uniform`` freezes attention to uniform (Wiegreffe &
    Pinter's baseline); ``embeddings`` ``[vocab_size, dim]`` initialise the word embedding (JW: pretrained vectors,
    fine-tuned)."""
    cls = REFERENCE_ENCODERS[encoder]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(vocab_size, num_labels=num_labels, embed_dim=embed_dim, hidden_dim=hidden_dim,
                   uniform_attention=uniform, special_token_ids=tuple(special_token_ids), embeddings=embeddings)
