"""Tiny random-weight HuggingFace sequence classifiers for tests, benchmarks and examples (like ``torch.testing``).

Nothing here touches the model hub: every model is built from a config with random weights, re-initialised so that
attention is far from uniform (every Linear/Embedding weight ~ N(0, std), std=0.2 by default), in eval mode, float32.

    >>> from attnfaith.testing import ARCHITECTURES, tiny_model, tiny_batch
    >>> model = tiny_model("bert")
    >>> batch = tiny_batch("bert", model)            # input_ids + attention_mask, padded
    >>> logits = model(**batch).logits               # (3, 3)

Token ids (all zoo models): pad=0, cls=bos=1, sep=eos=2, mask=3, 4 unused; 5..vocab-1 are ordinary tokens.

Findings for transformers 5.23 / torch 2.13 (this repository's venv; tests/attention/test_zoo.py re-checks the key ones)
--------------------------------------------------------------------------------------------------------------
Per architecture: the module that calls ``ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation,
eager_attention_forward)`` and its name pattern; whether it has ``layer_idx`` / ``is_causal`` /
``num_key_value_groups``; the kwargs it passes to the attention function besides (module, query, key, value,
attention_mask, dropout=, scaling=); attention calls per forward (L = num_layers).

  bert        BertSelfAttention        bert.encoder.layer.{i}.attention.self        layer_idx, is_causal=False
              + encoder_hidden_states, position_ids (from **kwargs)                                       L calls
  roberta     RobertaSelfAttention     roberta.encoder.layer.{i}.attention.self     as bert               L
  electra     ElectraSelfAttention     electra.encoder.layer.{i}.attention.self     as bert               L
  distilbert  DistilBertSelfAttention  distilbert.transformer.layer.{i}.attention   NO layer_idx, is_causal=False
              no extra kwargs                                                                             L
  albert      AlbertAttention          albert.encoder.albert_layer_groups.0.albert_layers.0.attention
              NO layer_idx, is_causal=False, + position_ids. ONE module shared by all layers: called L times.
  deberta-v2  none. DisentangledSelfAttention (deberta.encoder.layer.{i}.attention.self) does its own softmax;
              the probabilities (B, H, T, T) go through ``DisentangledSelfAttention.dropout`` (plain nn.Dropout,
              deberta.encoder.layer.{i}.attention.self.dropout): a forward hook on it can read/replace them
              (its sibling ``pos_dropout`` acts on the relative embeddings - not attention). No layer_idx/is_causal.
              Mask: 0/1 pair mask (B,1,T,T) = m_q * m_k, masked_fill(finfo.min).                           L
  modernbert  ModernBertAttention      model.layers.{i}.attn   layer_idx, is_causal=False
              + sliding_window (None on full layers; local_attention//2 + 1 = 5 on sliding layers, here layers
              1, 2 with global_attn_every_n_layers=3), deterministic. Sliding is also in the mask.             L
  gpt2        GPT2Attention            transformer.h.{i}.attn   layer_idx, is_causal=True, + position_ids,
              use_cache (bypasses the interface only with eager + reorder_and_upcast_attn=True; off here)    L
  llama       LlamaAttention           model.layers.{i}.self_attn   layer_idx, is_causal=True,
              num_key_value_groups=2 (k/v arrive with 2 heads; repeat_kv inside the function), + position_ids,
              use_cache                                                                                    L
  qwen2       Qwen2Attention           model.layers.{i}.self_attn   as llama + sliding_window (None)       L
  bart        BartAttention            model.encoder.layers.{i}.self_attn (is_causal=False, + use_cache),
              model.decoder.layers.{i}.self_attn (True), model.decoder.layers.{i}.encoder_attn (False);
              layer_idx on all                               3L: encoder self L, then per decoder layer self, cross
  t5          T5Attention              transformer.encoder.block.{i}.layer.0.SelfAttention (is_causal=False),
              transformer.decoder.block.{i}.layer.0.SelfAttention (True), ...block.{i}.layer.1.EncDecAttention
              (False); layer_idx on all; + position_bias (relative bias from block 0, reused by later blocks;
              zeros for cross); scaling=1.0 (no 1/sqrt(d)). t5's eager adds position_bias and mask separately;
              sdpa_attention_forward folds them into one float mask.                               3L (as bart)

A generic eager function ``softmax(q @ repeat_kv(k).T * scaling + position_bias + mask) @ repeat_kv(v)`` reproduces
every arch's eager logits exactly (diff 0.0), so one custom attention function can serve all eleven.

``model._can_set_attn_implementation()``: True for all except deberta-v2 (False: its file has ``*Attention(nn.Module)``
classes but no ``get_interface``). ``set_attn_implementation("sdpa")`` then ``("eager")`` works for the eleven others
(logits equal to ~1e-6); on deberta-v2 it only logs a warning and stays "eager", and
``tiny_model("deberta-v2", attn_implementation="sdpa")`` raises ValueError (no ``_supports_sdpa``). A custom name
registered with ``AttentionInterface.register(name, fn)`` is accepted by ``set_attn_implementation(name)`` and by
``from_config(..., attn_implementation=name)`` - BUT ``masking_utils`` returns mask=None for any name not in
``AttentionMaskInterface``, silently dropping padding and causal masks; also register
``AttentionMaskInterface.register(name, masking_utils.eager_mask)`` (or ``sdpa_mask``).

``output_attentions=True`` with eager: ``.attentions`` = tuple of L tensors (B, H, T, T) for all ten encoder or
decoder-only archs (deberta-v2 included); bart/t5 give ``encoder_attentions``, ``decoder_attentions`` and
``cross_attentions`` (L each; cross is (B, H, T_dec, T_enc)). With sdpa: a warning and an empty tuple ``()``.

Masks (``AttentionMaskInterface``), shape (B, 1, Tq, Tk): eager -> additive float32, 0 = attend,
``torch.finfo(float32).min`` = masked; sdpa -> bool, True = attend. Bidirectional (bert, ``create_bidirectional_mask``):
only keys are masked, so padded query rows still attend to the real keys; None when nothing is padded (eager too).
Causal (llama, ``create_causal_mask``): eager always materialises the causal float mask; sdpa gives None without
padding (is_causal). With left padding the padded query rows are fully masked -> eager softmax makes them uniform
1/T over all keys (padded and future included); likewise deberta-v2 pair-mask rows and modernbert sliding rows with
no real key in the window. Real query rows always put exactly 0 on padded keys.
bart/t5 decoder self-attention gets no padding mask at all (decoder_attention_mask is None): causal only.

Classification heads: bert/roberta/albert/electra/distilbert/deberta-v2 pool position 0; modernbert ("cls")
pools the first attended position; gpt2/llama/qwen2 pool the last non-pad token found from
``input_ids != pad_token_id`` (left padding -> index T-1; gpt2 positions are NOT shifted for left padding, so a row's
logits depend on its padding amount; llama/qwen2 rotary is relative); bart/t5 pool the decoder state at the eos of
``input_ids`` (decoder input = input_ids shifted right; start token bart eos=2, t5 pad=0) and raise unless every row
has the same number of eos tokens.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "reinit",
    "to_float64",
    "DECODER_ARCHITECTURES",
    "ENCODER_DECODER_ARCHITECTURES",
    "PAD_ID",
    "CLS_ID",
    "BOS_ID",
    "SEP_ID",
    "EOS_ID",
    "MASK_ID",
    "FIRST_ORDINARY_ID",
    "VOCAB_SIZE",
    "tiny_config",
    "tiny_model",
    "tiny_batch",
    "special_token_ids",
    "RowCounter",
]

ARCHITECTURES: tuple[str, ...] = (
    "bert",
    "distilbert",
    "roberta",
    "albert",
    "electra",
    "deberta-v2",
    "modernbert",
    "gpt2",
    "llama",
    "qwen2",
    "bart",
    "t5",
)
#: Causal classifiers: left padding, classify from the last token.
DECODER_ARCHITECTURES: tuple[str, ...] = ("gpt2", "llama", "qwen2")
#: Encoder-decoder classifiers: three kinds of attention (encoder self, decoder self, decoder cross).
ENCODER_DECODER_ARCHITECTURES: tuple[str, ...] = ("bart", "t5")

PAD_ID = 0
CLS_ID = BOS_ID = 1
SEP_ID = EOS_ID = 2
MASK_ID = 3
#: Ids ``FIRST_ORDINARY_ID .. VOCAB_SIZE - 1`` are ordinary tokens (4 is reserved, unused).
FIRST_ORDINARY_ID = 5
VOCAB_SIZE = 100
HIDDEN = 32
HEADS = 4
KV_HEADS = 2
INTERMEDIATE = 64
MAX_POSITIONS = 128

_SPECIAL_ATTRS = ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id", "mask_token_id")


def _check_arch(arch: str) -> str:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    return arch


def _config_kwargs(arch: str, num_layers: int) -> dict[str, Any]:
    ids = dict(
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        cls_token_id=CLS_ID,
        sep_token_id=SEP_ID,
        mask_token_id=MASK_ID,
    )
    bert_like = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=HIDDEN,
        num_hidden_layers=num_layers,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=MAX_POSITIONS,
        **ids,
    )
    if arch in ("bert", "roberta"):
        return dict(bert_like, classifier_dropout=0.0)
    if arch == "electra":
        return dict(bert_like, embedding_size=16, classifier_dropout=0.0, summary_last_dropout=0.0)
    if arch == "albert":
        return dict(bert_like, embedding_size=16, classifier_dropout_prob=0.0)
    if arch == "deberta-v2":
        # DeBERTa-v3 style: relative attention with c2p + p2c, no absolute positions, shared att key.
        return dict(
            bert_like,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_buckets=32,
            max_relative_positions=-1,
            position_biased_input=False,
            share_att_key=True,
            norm_rel_ebd="layer_norm",
            type_vocab_size=0,
            pooler_hidden_size=HIDDEN,
            pooler_dropout=0.0,
            cls_dropout=0.0,
        )
    if arch == "distilbert":
        return dict(
            vocab_size=VOCAB_SIZE,
            dim=HIDDEN,
            n_layers=num_layers,
            n_heads=HEADS,
            hidden_dim=INTERMEDIATE,
            dropout=0.0,
            attention_dropout=0.0,
            seq_classif_dropout=0.0,
            qa_dropout=0.0,
            max_position_embeddings=MAX_POSITIONS,
            **ids,
        )
    if arch == "modernbert":
        return dict(
            vocab_size=VOCAB_SIZE,
            hidden_size=HIDDEN,
            num_hidden_layers=num_layers,
            num_attention_heads=HEADS,
            intermediate_size=INTERMEDIATE,
            max_position_embeddings=MAX_POSITIONS,
            # layer 0 global, layer 1 (and 2) local with a window of +-4 tokens: exercises sliding_window.
            global_attn_every_n_layers=3,
            local_attention=8,
            attention_dropout=0.0,
            embedding_dropout=0.0,
            mlp_dropout=0.0,
            classifier_dropout=0.0,
            classifier_pooling="cls",
            **ids,
        )
    if arch == "gpt2":
        return dict(
            vocab_size=VOCAB_SIZE,
            n_embd=HIDDEN,
            n_layer=num_layers,
            n_head=HEADS,
            n_inner=INTERMEDIATE,
            n_positions=MAX_POSITIONS,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            summary_first_dropout=0.0,
            use_cache=False,
            **ids,
        )
    if arch in ("llama", "qwen2"):
        kw = dict(
            vocab_size=VOCAB_SIZE,
            hidden_size=HIDDEN,
            num_hidden_layers=num_layers,
            num_attention_heads=HEADS,
            num_key_value_heads=KV_HEADS,
            intermediate_size=INTERMEDIATE,
            max_position_embeddings=MAX_POSITIONS,
            attention_dropout=0.0,
            tie_word_embeddings=False,
            use_cache=False,
            **ids,
        )
        if arch == "qwen2":
            kw.update(use_sliding_window=False, max_window_layers=num_layers)
        return kw
    if arch == "bart":
        return dict(
            vocab_size=VOCAB_SIZE,
            d_model=HIDDEN,
            encoder_layers=num_layers,
            decoder_layers=num_layers,
            encoder_attention_heads=HEADS,
            decoder_attention_heads=HEADS,
            encoder_ffn_dim=INTERMEDIATE,
            decoder_ffn_dim=INTERMEDIATE,
            max_position_embeddings=MAX_POSITIONS,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            classifier_dropout=0.0,
            decoder_start_token_id=EOS_ID,
            forced_eos_token_id=EOS_ID,
            use_cache=False,
            **ids,
        )
    if arch == "t5":
        return dict(
            vocab_size=VOCAB_SIZE,
            d_model=HIDDEN,
            d_kv=HIDDEN // HEADS,
            d_ff=INTERMEDIATE,
            num_layers=num_layers,
            num_decoder_layers=num_layers,
            num_heads=HEADS,
            relative_attention_num_buckets=16,
            relative_attention_max_distance=MAX_POSITIONS,
            dropout_rate=0.0,
            classifier_dropout=0.0,
            decoder_start_token_id=PAD_ID,
            use_cache=False,
            **ids,
        )
    raise AssertionError(arch)  # pragma: no cover


_CONFIG_CLASSES = {
    "bert": "BertConfig",
    "distilbert": "DistilBertConfig",
    "roberta": "RobertaConfig",
    "albert": "AlbertConfig",
    "electra": "ElectraConfig",
    "deberta-v2": "DebertaV2Config",
    "modernbert": "ModernBertConfig",
    "gpt2": "GPT2Config",
    "llama": "LlamaConfig",
    "qwen2": "Qwen2Config",
    "bart": "BartConfig",
    "t5": "T5Config",
}


def tiny_config(arch: str, *, num_labels: int = 3, num_layers: int = 2, **config_overrides: Any):
    """The :class:`transformers.PretrainedConfig` :func:`tiny_model` builds ``arch`` from."""
    import transformers

    _check_arch(arch)
    kwargs = _config_kwargs(arch, num_layers)
    kwargs["num_labels"] = num_labels
    kwargs.update(config_overrides)
    return getattr(transformers, _CONFIG_CLASSES[arch])(**kwargs)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "norm" in type(module).__name__.lower()


@torch.no_grad()
def reinit(model: nn.Module, std: float, bias_std: float = 0.02) -> None:
    """Every Linear/Conv1D/Embedding weight ~ N(0, std), their biases ~ N(0, bias_std); norms: weight 1, bias 0.

    Parameters of any other module (none in the zoo's architectures) get N(0, std) if 2-D or more, else N(0, bias_std).
    Tied parameters are initialised once.
    """
    from transformers.pytorch_utils import Conv1D

    done: set[int] = set()

    def fill(param: torch.Tensor | None, how: str, value: float = 0.0) -> None:
        if param is None or id(param) in done:
            return
        done.add(id(param))
        if how == "normal":
            param.normal_(0.0, value)
        else:
            param.fill_(value)

    for module in model.modules():
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        weight = weight if isinstance(weight, nn.Parameter) else None
        bias = bias if isinstance(bias, nn.Parameter) else None
        if isinstance(module, (nn.Linear, Conv1D, nn.Embedding, nn.Conv1d)):
            fill(weight, "normal", std)
            fill(bias, "normal", bias_std)
        elif _is_norm(module):
            fill(weight, "const", 1.0)
            fill(bias, "const", 0.0)
    for param in model.parameters():
        if id(param) not in done:
            fill(param, "normal", std if param.dim() >= 2 else bias_std)


def to_float64(model: nn.Module) -> nn.Module:
    """``model`` in float64, for finite-difference checks. transformers' RMSNorm casts to float32 internally (too
    coarse for a finite difference): those modules get the same computation in float64."""
    import types

    model = model.double()
    for m in model.modules():
        if type(m).__name__.endswith("RMSNorm") and hasattr(m, "variance_epsilon"):

            def forward(self, x):
                return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

            m.forward = types.MethodType(forward, m)
    return model


def tiny_model(
    arch: str,
    *,
    num_labels: int = 3,
    seed: int = 0,
    std: float = 0.2,
    attn_implementation: str = "eager",
    num_layers: int = 2,
    **config_overrides: Any,
):
    """A tiny random-weight ``*ForSequenceClassification`` model of ``arch`` (one of :data:`ARCHITECTURES`).

    hidden 32, ``num_layers`` layers (default 2), 4 heads (llama/qwen2: 4 query heads, 2 key/value heads),
    intermediate 64, vocab 100, 128 positions, all dropout 0, eval mode, float32. Every Linear/Embedding weight is
    re-drawn from N(0, ``std``) (biases N(0, 0.02), norms weight 1 / bias 0) under ``torch.manual_seed(seed)``,
    without disturbing the global RNG state, so attention is far from uniform and the same seed gives the same model.
    ``config_overrides`` are passed to the config class last (e.g. ``hidden_act="relu"``).
    """
    import transformers

    config = tiny_config(arch, num_labels=num_labels, num_layers=num_layers, **config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForSequenceClassification.from_config(
            config, attn_implementation=attn_implementation
        )
        reinit(model, std)
    return model.float().eval()


def special_token_ids(model) -> set[int]:
    """The ids the zoo uses as special tokens for ``model`` (pad, cls/bos, sep/eos, mask), read from its config."""
    config = getattr(model, "config", model)
    out: set[int] = set()
    for attr in _SPECIAL_ATTRS:
        value = getattr(config, attr, None)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out.update(int(v) for v in value)
        else:
            out.add(int(value))
    return out


class RowCounter:
    """Forward pre-hook on a model: ``calls`` (forwards through the model's own ``forward``) and ``rows`` (the
    sequences they carried, from ``input_ids``). The tests' count of how many forwards an evaluator ran; remove it
    with ``counter.handle.remove()``."""

    def __init__(self, model: nn.Module) -> None:
        self.calls, self.rows = 0, 0
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls += 1
        self.rows += ids.shape[0]


def _first_id(config, attr: str, default: int) -> int:
    value = getattr(config, attr, None)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return default if value is None else int(value)


def _min_length(arch: str) -> int:
    # decoders: bos + 1 word; t5: 1 word + eos; the rest: cls/bos + 1 word + sep/eos
    return 2 if arch in DECODER_ARCHITECTURES or arch == "t5" else 3


def tiny_batch(
    arch: str,
    model,
    *,
    batch_size: int = 3,
    seq_len: int = 10,
    seed: int = 0,
    lengths: list[int] | None = None,
) -> dict[str, torch.Tensor]:
    """A padded batch (``input_ids``, ``attention_mask``, both int64 (B, seq_len)) laid out as ``arch`` expects.

    ``lengths`` are the numbers of real tokens (special tokens included) per row, cycled over the batch; by default
    ``[seq_len, seq_len - 3, seq_len - 5]`` (clamped to the shortest valid length), so padding is exercised. Words are
    random ordinary ids (``FIRST_ORDINARY_ID .. vocab - 1``) drawn from a generator seeded with ``seed``.

    * bert, distilbert, albert, electra, deberta-v2, modernbert: ``[CLS] w.. [SEP]`` + right padding
    * roberta, bart: ``<s> w.. </s>`` + right padding (bart: exactly one eos per row, as its head requires)
    * t5: ``w.. </s>`` + right padding
    * gpt2, llama, qwen2: left padding + ``<s> w..`` (the last real token is at position seq_len - 1)
    """
    _check_arch(arch)
    config = model.config
    pad = _first_id(config, "pad_token_id", PAD_ID)
    bos = _first_id(config, "bos_token_id", BOS_ID)
    eos = _first_id(config, "eos_token_id", EOS_ID)
    cls_ = _first_id(config, "cls_token_id", bos)
    sep = _first_id(config, "sep_token_id", eos)
    specials = special_token_ids(model)
    ordinary = torch.tensor([i for i in range(FIRST_ORDINARY_ID, config.vocab_size) if i not in specials])
    if ordinary.numel() == 0:
        raise ValueError(f"vocab_size {config.vocab_size} leaves no ordinary token ids")

    def words(n: int) -> torch.Tensor:
        return ordinary[torch.randint(0, ordinary.numel(), (n,), generator=gen)]

    min_len = _min_length(arch)
    if lengths is None:
        lengths = [max(min_len, min(seq_len, n)) for n in (seq_len, seq_len - 3, seq_len - 5)]
    else:
        lengths = [int(n) for n in lengths]
        if not lengths:
            raise ValueError("lengths must not be empty")
        bad = [n for n in lengths if n < min_len or n > seq_len]
        if bad:
            raise ValueError(f"lengths must be in [{min_len}, seq_len={seq_len}] for {arch!r}; got {bad}")
    if seq_len < min_len:
        raise ValueError(f"seq_len must be >= {min_len} for {arch!r}")

    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.full((batch_size, seq_len), pad, dtype=torch.long)
    attention_mask = torch.zeros((batch_size, seq_len), dtype=torch.long)
    for row in range(batch_size):
        n = lengths[row % len(lengths)]
        if arch in DECODER_ARCHITECTURES:
            seq = torch.cat([torch.tensor([bos]), words(n - 1)])
        elif arch == "t5":
            seq = torch.cat([words(n - 1), torch.tensor([eos])])
        elif arch in ("roberta", "bart"):
            seq = torch.cat([torch.tensor([bos]), words(n - 2), torch.tensor([eos])])
        else:
            seq = torch.cat([torch.tensor([cls_]), words(n - 2), torch.tensor([sep])])
        if arch in DECODER_ARCHITECTURES:
            input_ids[row, seq_len - n :] = seq
            attention_mask[row, seq_len - n :] = 1
        else:
            input_ids[row, :n] = seq
            attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
