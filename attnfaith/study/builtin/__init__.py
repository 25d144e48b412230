"""The built-in registrations of a study, one module each; importing this package registers them, in this order
(the order of ``--methods`` / ``--evaluators`` and of ``results.json``'s ``config``)."""

from attnfaith.study.builtin import methods  # noqa: F401
from attnfaith.study.builtin import kendall, permutation, erasure, single, uniform, adversarial  # noqa: F401
from attnfaith.study.builtin import eraser  # noqa: F401
from attnfaith.study.builtin import soft_eraser  # noqa: F401
from attnfaith.study.builtin import log_odds  # noqa: F401
from attnfaith.study.builtin import normalized_aopc  # noqa: F401
from attnfaith.study.builtin import scores  # noqa: F401
