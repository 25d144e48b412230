"""Threads: attention-hooking evaluators beside attributions and plain inference on the same model in other threads.

Every number is compared with the same computation run single-threaded first; the model must be left exactly as
found (attention implementation, hooks, instance ``forward`` attributes, train/eval flags, ``requires_grad``).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable

import pytest
import torch
from torch import nn

from attnfaith import AttentionTap, ErasureFlip, GradientImportance, LeaveOneOut, PermutationTVD
from attnfaith.attr import integrated_gradients
from attnfaith import _state
from attnfaith._state import model_guard
from attnfaith.attention import hf
from attnfaith.reference.models import BiLSTMAttentionClassifier
from attnfaith.testing import tiny_batch, tiny_model

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks_with_kwargs", "_backward_hooks")



def model_state(model: nn.Module) -> tuple:
    """What must be as found after concurrent use: attention implementations, hooks and instance ``forward``
    attributes on every module, train/eval flags, ``requires_grad``."""
    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}
    impls = sorted((k, c._attn_implementation) for k, c in configs.items())
    modules = [(n, tuple(len(getattr(m, a, None) or {}) for a in _HOOK_DICTS), "forward" in m.__dict__, m.training)
               for n, m in model.named_modules()]
    grads = [(n, p.requires_grad) for n, p in model.named_parameters()]
    return impls, modules, grads


def tensors(obj: Any) -> dict[str, torch.Tensor]:
    """The tensors of a result dataclass, or of a tensor / model output."""
    if isinstance(obj, torch.Tensor):
        return {"": obj}
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
                if isinstance(getattr(obj, f.name), torch.Tensor)}
    return {"logits": obj.logits}


def assert_same(got: Any, ref: Any, what: str) -> None:
    got_t, ref_t = tensors(got), tensors(ref)
    assert got_t.keys() == ref_t.keys(), what
    for name, r in ref_t.items():
        g = got_t[name]
        if r.is_floating_point():
            torch.testing.assert_close(g, r, rtol=0, atol=1e-6, equal_nan=True, msg=f"{what}: {name}")
        else:
            assert torch.equal(g, r), f"{what}: {name}"


def overlap(main: Callable[[], Any], other: Callable[[], Any], rounds: int) -> tuple[list, list]:
    """Run ``main`` ``rounds`` times in one thread while ``other`` runs in a loop in a second thread; both start at
    a barrier and the loop stops when ``main`` is done, so every run of ``other`` starts while ``main`` runs.
    Returns both lists of results; an exception in either thread is raised here."""
    barrier, done = threading.Barrier(2), threading.Event()
    results: dict[str, list] = {"main": [], "other": []}
    errors: list[BaseException] = []

    def run_main() -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                results["main"].append(main())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)
        finally:
            done.set()

    def run_other() -> None:
        try:
            barrier.wait()
            while not done.is_set():
                results["other"].append(other())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            done.set()

    threads = [threading.Thread(target=run_main), threading.Thread(target=run_other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors:
        raise errors[0]
    assert len(results["main"]) == rounds and results["other"], "the threads did not overlap"
    return results["main"], results["other"]


_BERT: dict = {}


def bert(impl: str = "eager"):
    """A tiny 3-layer BERT (the prefix cache applies to its last layer) and a padded batch; built once per impl."""
    if impl not in _BERT:
        model = tiny_model("bert", num_layers=3, seed=3, std=0.4, attn_implementation=impl)
        _BERT[impl] = (model, tiny_batch("bert", model, batch_size=4, seq_len=9, lengths=[9, 6, 4, 7], seed=3))
    return _BERT[impl]


def plain(model: nn.Module, enc: dict) -> torch.Tensor:
    """The logits of a plain forward (no tap)."""
    with torch.no_grad():
        out = model(**enc)
    return getattr(out, "logits", out)


# ------------------------------------------------------------------------------------ random overlap, many rounds


@pytest.mark.parametrize("other_name", ["plain", "loo", "gradient", "ig", "permutation"])
def test_attention_erasure_beside_other_work_on_the_same_model(other_name):
    model, enc = bert()
    erasure = ErasureFlip(model, level="attention", max_examples_per_batch=8)
    others = {
        "plain": lambda: plain(model, enc),
        "loo": lambda: LeaveOneOut(model).attribute(enc),
        "gradient": lambda: GradientImportance(model).attribute(enc),
        "ig": lambda: integrated_gradients(model, n_steps=8).attribute(enc),
        "permutation": lambda: PermutationTVD(model, n_permutations=6).evaluate(enc),
    }
    other = others[other_name]
    before = model_state(model)
    ref_main, ref_other = erasure.evaluate(enc), other()  # single-threaded first
    assert model_state(model) == before
    mains, outs = overlap(lambda: erasure.evaluate(enc), other, rounds=3)
    for i, res in enumerate(mains):
        assert_same(res, ref_main, f"erasure, round {i}")
    for i, res in enumerate(outs):
        assert_same(res, ref_other, f"{other_name}, run {i}")
    assert model_state(model) == before
    assert not hf._ACTIVE and not hf._SWITCHED and not _state._SHARED  # every shared change undone


def test_guards_in_two_threads_restore_training_mode_only_at_the_end():
    """A model in training mode: both evaluations run in eval mode throughout (no thread's guard puts the model back
    in training mode under the other's), and the model is in training mode again afterwards, parameters unfrozen."""
    model = tiny_model("bert", num_layers=3, seed=3, std=0.4, hidden_dropout_prob=0.5,
                       attention_probs_dropout_prob=0.5)
    enc = tiny_batch("bert", model, batch_size=4, seq_len=9, lengths=[9, 6, 4, 7], seed=3)
    model.train()
    before = model_state(model)
    erasure, loo = ErasureFlip(model, level="attention"), LeaveOneOut(model)
    ref_main, ref_other = erasure.evaluate(enc), loo.attribute(enc)
    mains, outs = overlap(lambda: erasure.evaluate(enc), lambda: loo.attribute(enc), rounds=3)
    for res in mains:
        assert_same(res, ref_main, "erasure")
    for res in outs:
        assert_same(res, ref_other, "loo")
    assert model_state(model) == before and model.training


def test_sdpa_model_plain_inference_beside_a_tap_is_bit_identical():
    """While a tap switches the configs to attnfaith's implementation, a thread without a tap runs the model's own
    sdpa attention and sdpa mask: the same bits as without any tap."""
    model, enc = bert("sdpa")
    ref = plain(model, enc)
    before = model_state(model)
    mains, outs = overlap(lambda: ErasureFlip(model, level="attention").evaluate(enc), lambda: plain(model, enc), 2)
    for out in outs:
        assert torch.equal(out, ref)
    assert model_state(model) == before and model.config._attn_implementation == "sdpa"


def _custom_model():
    torch.manual_seed(0)
    model = BiLSTMAttentionClassifier(40, num_labels=2, embed_dim=16, hidden_dim=8).eval()
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 2], [1, 10, 11, 12, 2, 0, 0], [1, 13, 14, 15, 16, 2, 0]])
    return model, {"input_ids": ids, "attention_mask": (ids != 0).long()}


@pytest.mark.parametrize("route", ["module", "dropout"])
def test_module_and_dropout_routes_are_per_thread(route):
    """The custom-model route (AttentionSoftmax hooks) and the dropout route (DeBERTa-v2) act only on the thread
    whose tap is active."""
    if route == "module":
        model, enc = _custom_model()
    else:
        model = tiny_model("deberta-v2", num_layers=2, seed=2, std=0.4)
        enc = tiny_batch("deberta-v2", model, batch_size=4, seq_len=9, lengths=[9, 6, 4, 7], seed=3)
    erasure = ErasureFlip(model, level="attention")
    ref_main, ref_other = erasure.evaluate(enc), plain(model, enc)
    before = model_state(model)
    mains, outs = overlap(lambda: erasure.evaluate(enc), lambda: plain(model, enc), rounds=3)
    for res in mains:
        assert_same(res, ref_main, "erasure")
    for out in outs:
        assert_same(out, ref_other, "plain")
    assert model_state(model) == before


# ------------------------------------------------------------------- forced interleavings (one forward paused)


def _pause_in(module: nn.Module, when: Callable[[], bool], paused: threading.Event, resume: threading.Event):
    """A forward hook that, the first time ``module`` finishes a forward with ``when()`` true, sets ``paused`` and
    waits for ``resume``."""

    def hook(mod, args, output):
        if not paused.is_set() and when():
            paused.set()
            assert resume.wait(60)
        return None

    return module.register_forward_hook(hook)


def _in(box: dict) -> Callable[[], bool]:
    """True in the thread started with ``box``."""
    return lambda: threading.get_ident() == box.get("ident")


def _start(fn: Callable[[], Any], box: dict) -> threading.Thread:
    """Run ``fn`` in a new thread; ``box`` gets its ``ident``, then its ``result`` or ``error``."""

    def run() -> None:
        box["ident"] = threading.get_ident()
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _join(thread: threading.Thread, box: dict) -> Any:
    thread.join(timeout=60)
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_tapped_forward_paused_mid_model_while_other_threads_run():
    """Thread A's tapped, intervened forward stops after layer 1; meanwhile another thread runs plain inference,
    leave-one-out and a whole attention evaluation (its own taps and prefix caches). A then finishes: it saw exactly
    its own 3 layers (no call counted from the other thread's forwards) and its numbers are the reference's."""
    model, enc = bert()
    keep = torch.zeros(4, 9, dtype=torch.bool)
    keep[:, 1] = True

    def tapped() -> tuple:
        with torch.no_grad(), AttentionTap(model) as tap:
            tap.intervene("zero", keep, layers=-1)
            logits = model(**enc).logits
        return logits, tap.attentions, tuple(l.name for l in tap.layers)

    with torch.no_grad(), AttentionTap(model) as tap:
        model(**enc)  # the layer count, for layers=-1
    ref_tapped, ref_plain = tapped(), plain(model, enc)
    erasure = ErasureFlip(model, level="attention")
    ref_erasure, ref_loo = erasure.evaluate(enc), LeaveOneOut(model).attribute(enc)
    before = model_state(model)

    paused, resume, box = threading.Event(), threading.Event(), {}
    handle = _pause_in(model.bert.encoder.layer[1], _in(box), paused, resume)
    thread = _start(tapped, box)
    try:
        assert paused.wait(60)
        assert model.config._attn_implementation == hf.IMPLEMENTATION  # A's tap is installed
        assert torch.equal(plain(model, enc), ref_plain)
        assert_same(LeaveOneOut(model).attribute(enc), ref_loo, "loo")
        assert_same(erasure.evaluate(enc), ref_erasure, "erasure")
    finally:
        resume.set()
        handle.remove()
        logits, attentions, names = _join(thread, box)
    assert names == ref_tapped[2] and len(attentions) == 3
    assert_same(logits, ref_tapped[0], "tapped logits")
    for a, r in zip(attentions, ref_tapped[1]):
        assert_same(a, r, "tapped attention")
    assert model_state(model) == before


def test_evaluation_paused_with_the_prefix_cache_stubbing_blocks():
    """An attention evaluation stops in a variant forward, its tap installed and the lower blocks stubbed by its
    prefix cache; a plain forward and leave-one-out in another thread run every block themselves."""
    model, enc = bert()
    erasure = ErasureFlip(model, level="attention")
    ref_plain, ref_erasure, ref_loo = plain(model, enc), erasure.evaluate(enc), LeaveOneOut(model).attribute(enc)
    before = model_state(model)
    lower = model.bert.encoder.layer[0]
    paused, resume, box = threading.Event(), threading.Event(), {}
    stubbed = lambda: _in(box)() and "forward" in lower.__dict__  # noqa: E731
    handle = _pause_in(model.bert.encoder.layer[2], stubbed, paused, resume)
    thread = _start(lambda: erasure.evaluate(enc), box)
    try:
        assert paused.wait(60)
        assert torch.equal(plain(model, enc), ref_plain)
        assert_same(LeaveOneOut(model).attribute(enc), ref_loo, "loo")
    finally:
        resume.set()
        handle.remove()
        result = _join(thread, box)
    assert_same(result, ref_erasure, "erasure")
    assert model_state(model) == before


def test_plain_forward_straddling_a_tap_on_an_sdpa_model():
    """A plain forward of an sdpa model builds its mask, stops after layer 0, runs its other layers while another
    thread's tap has switched the configs, and gives the same bits as an undisturbed forward."""
    model, enc = bert("sdpa")
    ref = plain(model, enc)
    before = model_state(model)
    paused, resume, box = threading.Event(), threading.Event(), {}
    handle = _pause_in(model.bert.encoder.layer[0], _in(box), paused, resume)
    thread = _start(lambda: plain(model, enc), box)
    try:
        assert paused.wait(60)
        with torch.no_grad(), AttentionTap(model) as tap:
            tap.intervene("uniform", layers=None)
            model(**enc)
            assert model.config._attn_implementation == hf.IMPLEMENTATION
            resume.set()
            out = _join(thread, box)
    finally:
        resume.set()
        handle.remove()
    assert torch.equal(out, ref)
    assert model_state(model) == before


def test_taps_in_two_threads_and_nesting_in_one():
    """One tap per model per thread: a second tap on the same model in the same thread is an error, in another
    thread it is independent (its own layers, captures and interventions)."""
    model, enc = bert()
    ref = plain(model, enc)
    entered, leave = threading.Event(), threading.Event()

    def uniform_tap() -> torch.Tensor:
        with torch.no_grad(), AttentionTap(model, capture=None) as tap:
            tap.intervene("uniform", layers=None)
            entered.set()
            assert leave.wait(60)
            return model(**enc).logits

    box: dict = {}
    thread = _start(uniform_tap, box)
    try:
        assert entered.wait(60)
        with torch.no_grad(), AttentionTap(model) as tap:
            with pytest.raises(RuntimeError, match="already active on this model in this thread"):
                with AttentionTap(model):
                    pass
            assert torch.equal(model(**enc).logits, ref)  # the other thread's uniform intervention is not here
            assert len(tap.attentions) == 3
    finally:
        leave.set()
        uniform = _join(thread, box)
    assert not torch.allclose(uniform, ref)
    with torch.no_grad(), AttentionTap(model, capture=None) as tap:
        tap.intervene("uniform", layers=None)
        assert torch.equal(model(**enc).logits, uniform)


def test_model_guard_is_reference_counted():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    model[0].weight.requires_grad_(False)
    first = model_guard(model)
    first.__enter__()
    second = model_guard(model)
    second.__enter__()
    for p in model.parameters():
        p.requires_grad_(False)
    first.__exit__(None, None, None)  # not the last guard: nothing restored yet
    assert not model.training and not model[1].training and not model[0].bias.requires_grad
    second.__exit__(None, None, None)
    assert model.training and model[1].training
    assert not model[0].weight.requires_grad and model[0].bias.requires_grad
