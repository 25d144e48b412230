"""What determines the numbers of a study run: :class:`EvaluationConfig`, its checks, and the errors of a run.

The method and evaluator names a configuration accepts are those of the registry
(:mod:`attnfaith.study.registry`): the built-in ones and any registered later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from attnfaith.study import registry

__all__ = ["EvaluationConfig", "PipelineError", "RunExistsError", "parse_list", "SEED_LIMIT", "ERASURE_LEVELS"]

#: seeds are integers in ``0 .. SEED_LIMIT - 1`` (NumPy's and most libraries' 32-bit seeds)
SEED_LIMIT = 2**32
#: the erasure levels, in the order of the report
ERASURE_LEVELS = ("token", "attention")


class PipelineError(ValueError):
    """A problem with the inputs of an evaluation run, reported to the user as one line."""


class RunExistsError(PipelineError):
    """The output folder already holds a run (and neither resume nor overwrite was asked for)."""


def parse_list(value: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    """A comma-separated list (or a sequence) of names from ``allowed``, in ``allowed``'s order, without duplicates.

    ``PipelineError`` naming the unknown entries.
    """
    if value is None:
        return []
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if not items:
        raise PipelineError(f"no {what} given; choose from {', '.join(allowed)}")
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise PipelineError(
            f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}"
        )
    return [a for a in allowed if a in items]


@dataclass
class EvaluationConfig:
    """Everything that determines the numbers of a run (stored in ``results.json``; ``--resume`` checks it).

    Attributes:
        methods, evaluators: registered names (:func:`attnfaith.study.registry.method_names` /
            :func:`~attnfaith.study.registry.evaluator_names`); default: every method, every evaluator registered
            with ``default=True``.
        layer: the attention layer (call order; ``-1`` the last) read by ``attention`` and tested by the attention
            evaluators.
        batch_size: examples per chunk (one forward of the originals; the variants of a chunk run in forwards of
            ``variants_per_forward``).
        seed: the run's seed, an integer in ``0 .. 2**32 - 1``; example ``i`` (dataset index) draws from the
            generator seeded ``example_seed(seed, i)`` (:mod:`attnfaith.seeding`), whatever its chunk.
        max_length: tokenizer truncation: at most the positions the model takes
            (:func:`attnfaith.attention.forward_args.max_positions`).
        permutations: permutations per example (Jain & Wallace: 100).
        ig_steps: integration steps of integrated gradients.
        n_random: random orders for the random erasure baseline (Serrano & Smith: 5).
        adversarial_steps: Adam steps of the adversarial search (Jain & Wallace: 500).
        variants_per_forward: variants per forward (Captum's ``max_examples_per_batch``); None: from memory.
        erasure_levels: ``("token", "attention")`` by default.
        gradient_detach_attention: the ``gradient`` method treats the attention weights as constants (Jain &
            Wallace's setting for their reference models: the gradient flows through the values only).
    """

    methods: tuple[str, ...] = field(default_factory=lambda: registry.method_names(default_only=True))
    evaluators: tuple[str, ...] = field(default_factory=lambda: registry.evaluator_names(default_only=True))
    layer: int = -1
    batch_size: int = 16
    seed: int = 0
    max_length: int = 128
    permutations: int = 100
    ig_steps: int = 50
    n_random: int = 5
    adversarial_steps: int = 500
    variants_per_forward: int | None = None
    erasure_levels: tuple[str, ...] = ERASURE_LEVELS
    gradient_detach_attention: bool = False

    def __post_init__(self) -> None:
        self.methods = tuple(parse_list(list(self.methods), registry.method_names(), "method"))
        self.evaluators = tuple(parse_list(list(self.evaluators), registry.evaluator_names(), "evaluator"))
        self.erasure_levels = tuple(parse_list(list(self.erasure_levels), ERASURE_LEVELS, "erasure level"))
        for name in ("batch_size", "max_length", "permutations", "ig_steps", "n_random"):
            _check_int(name, getattr(self, name), 1)
        _check_int("adversarial_steps", self.adversarial_steps, 0)
        if self.variants_per_forward is not None:
            _check_int("variants_per_forward", self.variants_per_forward, 1)
        _check_int("layer", self.layer, None)
        _check_int("seed", self.seed, 0, SEED_LIMIT)
        if not isinstance(self.gradient_detach_attention, bool):
            raise PipelineError(f"gradient_detach_attention must be True or False, got {self.gradient_detach_attention!r}")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as ``results.json`` stores it (tuples as lists)."""
        return {
            "methods": list(self.methods),
            "evaluators": list(self.evaluators),
            "layer": self.layer,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "max_length": self.max_length,
            "permutations": self.permutations,
            "ig_steps": self.ig_steps,
            "n_random": self.n_random,
            "adversarial_steps": self.adversarial_steps,
            "variants_per_forward": self.variants_per_forward,
            "erasure_levels": list(self.erasure_levels),
            "gradient_detach_attention": self.gradient_detach_attention,
        }


def _check_int(name: str, value: Any, low: int | None, high: int | None = None) -> None:
    """``PipelineError`` naming the option ``--name`` unless ``value`` is an ``int`` (not a bool) with
    ``low <= value < high`` (no bound where None)."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int):
        raise PipelineError(f"{flag} must be an integer, got {value!r}")
    if (low is None or value >= low) and (high is None or value < high):
        return
    if high is not None:
        rule = f"an integer in {low}..{high - 1}"
    else:
        rule = "a positive integer" if low == 1 else f"an integer >= {low}"
    raise PipelineError(f"{flag} must be {rule}, got {value!r}")
