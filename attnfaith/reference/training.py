"""Training loops: the reference models as Jain & Wallace trained them, and a plain fine-tuning loop for HuggingFace.

* :func:`train_classifier` trains a reference model (:mod:`attnfaith.reference.models`) on encoded tensors: Adam with AMSGrad,
  lr 1e-3, weight decay 1e-5 except on the attention parameters, class-balanced cross-entropy, model selection on dev
  ROC-AUC never keeping epoch 1, best state restored (JW ``Trainers/TrainerBC.py`` + ``model/Binary_Classification.py``).
* :func:`fine_tune_hf` fine-tunes a HuggingFace sequence classifier with AdamW and linear warm-up/decay.
* :func:`evaluate_classifier` / :func:`evaluate_hf` give accuracy, macro F1 and ROC-AUC.

Both training functions are seeded and leave the global RNG state as they found it (``torch.random.fork_rng``), show
a tqdm progress bar (``progress=False`` hides it), and return the model in eval mode with its best state loaded.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn
from tqdm.auto import tqdm

from attnfaith._inputs import logits_of
from attnfaith.attention.model_facts import model_device

__all__ = [
    "TrainResult",
    "train_classifier",
    "evaluate_classifier",
    "predict_proba",
    "fine_tune_hf",
    "evaluate_hf",
    "classification_metrics",
]


# ---------------------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------------------


def _binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC by the Mann-Whitney statistic (average ranks for ties); nan if one class is absent."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(labels, probs) -> dict[str, float]:
    """``dict(accuracy, f1, auc)`` from gold labels ``[N]`` and class probabilities ``[N, K]``.

    ``f1`` is macro F1 over the classes present in labels or predictions. ``auc`` is the ROC-AUC of ``P(class 1)``
    for two classes (JW's ``roc_auc``) and the macro one-vs-rest AUC over the classes present otherwise; nan when
    it is undefined (a single class in ``labels``).
    """
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1 - p, p], axis=1)
    if len(y) == 0:
        return {"accuracy": float("nan"), "f1": float("nan"), "auc": float("nan")}
    pred = p.argmax(axis=1)
    acc = float((pred == y).mean())
    f1s = []
    for c in sorted(set(y.tolist()) | set(pred.tolist())):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    if p.shape[1] == 2:
        auc = _binary_auc(y, p[:, 1])
    else:
        aucs = [_binary_auc((y == c).astype(np.int64), p[:, c]) for c in range(p.shape[1])]
        aucs = [a for a in aucs if not math.isnan(a)]
        auc = float(np.mean(aucs)) if aucs else float("nan")
    return {"accuracy": acc, "f1": float(np.mean(f1s)), "auc": auc}


def _unpack(data, name: str, need_labels: bool = True):
    """``(input_ids, attention_mask, labels)`` from a tuple/list or a mapping with those keys."""
    if isinstance(data, Mapping):
        if "input_ids" not in data:
            raise ValueError(f"{name}: a mapping needs 'input_ids' (and 'attention_mask', 'labels'); got {list(data)}")
        ids, mask, labels = data["input_ids"], data.get("attention_mask"), data.get("labels")
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        ids, mask = data[0], data[1]
        labels = data[2] if len(data) == 3 else None
    else:
        raise TypeError(
            f"{name}: expected (input_ids, attention_mask, labels) or a mapping with those keys "
            "(e.g. Vocabulary.encode_dataset(...)), got " + type(data).__name__
        )
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() != 2:
        raise ValueError(f"{name}: input_ids must be [N, T], got {tuple(ids.shape)}")
    mask = (ids != 0).long() if mask is None else torch.as_tensor(mask).long()
    if mask.shape != ids.shape:
        raise ValueError(f"{name}: attention_mask shape {tuple(mask.shape)} != input_ids shape {tuple(ids.shape)}")
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.shape[0] != ids.shape[0]:
            raise ValueError(f"{name}: {labels.shape[0]} labels for {ids.shape[0]} rows")
    elif need_labels:
        raise ValueError(f"{name}: labels are needed")
    return ids, mask, labels


def _trim(ids: torch.Tensor, mask: torch.Tensor):
    """Drop the all-padding columns on the right of a batch."""
    width = int(mask.sum(dim=1).max().item()) if mask.numel() else 0
    width = max(width, 1)
    return ids[:, :width], mask[:, :width]


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    input_ids,
    attention_mask=None,
    *,
    batch_size: int = 256,
    device=None,
) -> torch.Tensor:
    """Softmax probabilities ``[N, num_labels]`` (CPU) of a reference model (or any model called as
    ``model(input_ids=..., attention_mask=...)``), in eval mode; the model's train/eval mode is restored."""
    ids, mask, _ = _unpack((input_ids, attention_mask), "inputs", need_labels=False)
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    try:
        out = []
        for s in range(0, ids.shape[0], batch_size):
            b_ids, b_mask = _trim(ids[s : s + batch_size], mask[s : s + batch_size])
            logits = logits_of(model(input_ids=b_ids.to(device), attention_mask=b_mask.to(device)))
            out.append(torch.softmax(logits.float(), dim=-1).cpu())
        if not out:
            return torch.zeros(0, getattr(model, "num_labels", 2))
        return torch.cat(out)
    finally:
        model.train(was_training)


def evaluate_classifier(
    model: nn.Module,
    input_ids,
    attention_mask=None,
    labels=None,
    *,
    batch_size: int = 256,
    device=None,
) -> dict[str, float]:
    """``dict(accuracy, f1, auc)`` of a reference model on encoded data (see :func:`classification_metrics`).

    ``input_ids`` may also be a mapping / tuple holding all three (as for :func:`train_classifier`).
    """
    if isinstance(input_ids, (Mapping, tuple, list)) and attention_mask is None and labels is None:
        ids, mask, y = _unpack(input_ids, "data")
    else:
        ids, mask, y = _unpack((input_ids, attention_mask, labels), "data")
    probs = predict_proba(model, ids, mask, batch_size=batch_size, device=device)
    return classification_metrics(y.numpy(), probs.numpy())


# ---------------------------------------------------------------------------------------------------------------
# the shared loop
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a training run did.

    Attributes:
        best_epoch: the (1-based) epoch whose state the model now holds.
        best_metric: its dev value of ``select_by`` (None without dev data).
        select_by: the selection metric actually used (``"auc"`` falls back to ``"accuracy"`` when dev has one class).
        history: one dict per epoch: ``epoch``, ``train_loss`` (the mean loss per training example over the epoch,
            also when the optimised loss is the batch's sum) and the dev metrics (``accuracy``, ``f1``, ``auc``).
        epochs_run: epochs actually trained.
        stopped_early: early stopping ended the run.
    """

    best_epoch: int
    best_metric: float | None
    select_by: str
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    stopped_early: bool = False

    @property
    def best_dev(self) -> dict | None:
        """The dev metrics of the selected epoch."""
        for h in self.history:
            if h["epoch"] == self.best_epoch:
                return h
        return None


def _fit(
    model: nn.Module,
    *,
    n_train: int,
    batch_size: int,
    epochs: int,
    seed: int,
    device: torch.device,
    step_fn: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler,
    evaluate: Callable[[], dict] | None,
    select_by: str,
    skip_first_epoch: bool,
    early_stopping_patience: int | None,
    grad_clip: float | None,
    progress: bool,
    desc: str,
    loss_is_sum: bool = False,
) -> TrainResult:
    """The shared epoch loop. ``step_fn(idx)`` returns the loss of the batch ``idx``: its sum over the examples
    (``loss_is_sum``) or its mean. The loss shown and stored (``history[i]["train_loss"]``) is always the mean
    per example over the epoch, whatever is optimised."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if n_train < 1:
        raise ValueError("no training rows")
    gen = torch.Generator().manual_seed(int(seed))
    n_batches = math.ceil(n_train / batch_size)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    history: list[dict] = []
    best_state = None
    best_epoch, best_metric = None, None
    stale = 0
    stopped = False
    params = [p for p in model.parameters() if p.requires_grad]
    bar = tqdm(total=epochs * n_batches, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(int(seed))
            for epoch in range(1, epochs + 1):
                model.train()
                order = torch.randperm(n_train, generator=gen)
                total, count = 0.0, 0
                for b in range(n_batches):
                    idx = order[b * batch_size : (b + 1) * batch_size]
                    optimizer.zero_grad(set_to_none=True)
                    loss = step_fn(idx)
                    loss.backward()
                    if grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(params, grad_clip)
                    optimizer.step()
                    if scheduler is not None:
                        scheduler.step()
                    total += float(loss.detach()) * (1 if loss_is_sum else len(idx))
                    count += len(idx)
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{total / count:.4g}", refresh=False)
                record = {"epoch": epoch, "train_loss": total / max(count, 1)}
                if evaluate is not None:
                    metrics = evaluate()
                    record.update(metrics)
                    eligible = not (skip_first_epoch and epoch == 1 and epochs > 1)
                    if eligible:
                        value = metrics[select_by]
                        if best_metric is None or value > best_metric:
                            best_metric, best_epoch = value, epoch
                            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                            stale = 0
                        else:
                            stale += 1
                    bar.set_postfix(epoch=epoch, loss=f"{record['train_loss']:.4g}",
                                    **{f"dev_{select_by}": f"{metrics[select_by]:.4f}"})
                history.append(record)
                if early_stopping_patience is not None and evaluate is not None and stale >= early_stopping_patience:
                    stopped = epoch < epochs
                    break
    finally:
        bar.close()
    epochs_run = len(history)
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epochs_run  # no dev data: keep the last epoch
    model.eval()
    return TrainResult(
        best_epoch=int(best_epoch),
        best_metric=None if best_metric is None else float(best_metric),
        select_by=select_by,
        history=history,
        epochs_run=epochs_run,
        stopped_early=stopped,
    )


def _check_select_by(select_by: str, dev_labels: torch.Tensor | None) -> str:
    if select_by not in ("auc", "accuracy", "f1"):
        raise ValueError(f"select_by must be 'auc', 'accuracy' or 'f1', got {select_by!r}")
    if dev_labels is not None and select_by == "auc" and torch.unique(dev_labels).numel() < 2:
        warnings.warn("dev has a single class, ROC-AUC is undefined: selecting by accuracy", stacklevel=3)
        return "accuracy"
    return select_by


# ---------------------------------------------------------------------------------------------------------------
# reference models
# ---------------------------------------------------------------------------------------------------------------


def train_classifier(
    model: nn.Module,
    train,
    dev=None,
    *,
    epochs: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    batch_size: int = 32,
    seed: int = 0,
    amsgrad: bool = True,
    class_balanced: bool = True,
    loss_reduction: str = "sum",
    early_stopping_patience: int | None = 3,
    select_by: str = "auc",
    skip_first_epoch: bool = True,
    grad_clip: float | None = None,
    device=None,
    progress: bool = True,
    eval_batch_size: int = 256,
) -> TrainResult:
    """Train a reference model (:mod:`attnfaith.reference.models`) as Jain & Wallace did; returns a :class:`TrainResult`.

    Args:
        model: called as ``model(input_ids=..., attention_mask=...)`` and returning logits ``[B, K]``.
        train, dev: ``(input_ids, attention_mask, labels)`` tensors (right-padded; ``[N, T]``, ``[N, T]``, ``[N]``)
            or a mapping with those keys, e.g. ``vocab.encode_dataset(dataset)``. Batches are trimmed to their
            longest row. Without ``dev`` there is no selection: the last epoch is kept.
        epochs: at most this many epochs (JW: 8 for SST).
        lr, weight_decay, amsgrad: Adam (AMSGrad) as JW: lr 1e-3, weight decay 1e-5, none on the parameters whose
            name contains ``"attention"`` (JW's separate ``attn_optim`` has ``weight_decay=0``).
        class_balanced: weight each example by ``N / (K * n_class)``; for binary data the ratio of the weights is
            JW's ``pos_weight = n_neg / n_pos``.
        loss_reduction: ``"sum"`` over the batch (JW: ``(bce * weight).mean(1).sum()``) or ``"mean"``: what is
            optimised. The loss shown in the progress bar and stored in ``history`` is the mean per example either
            way (JW's code prints the sum).
        select_by: dev metric to keep the best epoch by: ``"auc"`` (JW's ``roc_auc``; binary: AUC of
            ``P(class 1)``, multi-class: macro one-vs-rest), ``"accuracy"`` or ``"f1"``. Ties keep the earlier epoch.
        skip_first_epoch: never select epoch 1 (JW: ``if metric > best_metric and i > 0``), unless ``epochs == 1``.
        early_stopping_patience: stop after this many selectable epochs without improvement (None: never).
        grad_clip: optional max gradient norm (JW: none).
        device: where to train (default: where the model is); the model stays there.
        progress: show a tqdm bar.

    The run is seeded (``torch.Generator(seed)`` for shuffling, ``torch.manual_seed(seed)`` for dropout under
    ``torch.random.fork_rng``, so the caller's RNG state is untouched); the same seed and initial weights give
    identical weights. The best dev state is restored and the model is left in eval mode.
    """
    ids, mask, y = _unpack(train, "train")
    dev_data = _unpack(dev, "dev") if dev is not None else None
    select_by = _check_select_by(select_by, None if dev_data is None else dev_data[2])
    if loss_reduction not in ("sum", "mean"):
        raise ValueError(f"loss_reduction must be 'sum' or 'mean', got {loss_reduction!r}")
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)

    num_labels = int(getattr(model, "num_labels", int(y.max()) + 1))
    if int(y.min()) < 0 or int(y.max()) >= num_labels:
        raise ValueError(f"train labels must lie in [0, {num_labels}), got [{int(y.min())}, {int(y.max())}]")
    if class_balanced:
        counts = torch.bincount(y, minlength=num_labels).float()
        present = counts > 0
        weights = torch.ones(num_labels)
        weights[present] = len(y) / (int(present.sum()) * counts[present])
    else:
        weights = torch.ones(num_labels)
    weights = weights.to(device)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if "attention" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    optimizer = torch.optim.Adam(groups, lr=lr, amsgrad=amsgrad)

    def step(idx: torch.Tensor) -> torch.Tensor:
        b_ids, b_mask = _trim(ids[idx], mask[idx])
        b_y = y[idx].to(device)
        logits = logits_of(model(input_ids=b_ids.to(device), attention_mask=b_mask.to(device)))
        loss = F.cross_entropy(logits.float(), b_y, weight=weights, reduction="none")
        return loss.sum() if loss_reduction == "sum" else loss.mean()

    evaluate = None
    if dev_data is not None:
        def evaluate() -> dict:
            return evaluate_classifier(model, *dev_data, batch_size=eval_batch_size, device=device)

    return _fit(
        model,
        n_train=ids.shape[0],
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        device=device,
        step_fn=step,
        optimizer=optimizer,
        scheduler=None,
        evaluate=evaluate,
        select_by=select_by,
        skip_first_epoch=skip_first_epoch,
        early_stopping_patience=early_stopping_patience,
        grad_clip=grad_clip,
        progress=progress,
        desc="train",
        loss_is_sum=loss_reduction == "sum",
    )


# ---------------------------------------------------------------------------------------------------------------
# HuggingFace
# ---------------------------------------------------------------------------------------------------------------


def _hf_batches(tokenizer, texts: Sequence[str], max_length: int, batch_size: int) -> Iterator[dict]:
    for s in range(0, len(texts), batch_size):
        yield tokenizer(
            list(texts[s : s + batch_size]), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )


def _hf_inputs(enc, device) -> dict:
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


@torch.no_grad()
def evaluate_hf(
    model: nn.Module,
    tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    max_length: int = 64,
    batch_size: int = 128,
    device=None,
) -> dict[str, float]:
    """``dict(accuracy, f1, auc)`` of a HuggingFace sequence classifier (model mode restored afterwards)."""
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    try:
        probs = []
        for enc in _hf_batches(tokenizer, list(texts), max_length, batch_size):
            probs.append(torch.softmax(logits_of(model(**_hf_inputs(enc, device))).float(), dim=-1).cpu())
    finally:
        model.train(was_training)
    return classification_metrics(np.asarray(labels), torch.cat(probs).numpy())


def fine_tune_hf(
    model: nn.Module,
    tokenizer,
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    dev_texts: Sequence[str] | None = None,
    dev_labels: Sequence[int] | None = None,
    *,
    epochs: int = 2,
    lr: float = 5e-5,
    batch_size: int = 32,
    max_length: int = 64,
    seed: int = 0,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    grad_clip: float | None = 1.0,
    select_by: str = "accuracy",
    skip_first_epoch: bool = False,
    early_stopping_patience: int | None = None,
    eval_batch_size: int = 128,
    device=None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a HuggingFace sequence classifier (``AutoModelForSequenceClassification``) on texts and labels.

    AdamW (no weight decay on biases and norm weights), linear warm-up over ``warmup_ratio`` of the steps then
    linear decay to 0, gradient clipping, cross-entropy on the logits. Evaluated on dev after each epoch; the best
    epoch by ``select_by`` is restored (ties keep the earlier one). Texts are tokenized per batch (padding to the
    longest, truncation to ``max_length``). Seeded like :func:`train_classifier`; the model is left in eval mode.
    """
    train_texts = list(train_texts)
    y = torch.as_tensor(list(train_labels), dtype=torch.long)
    if len(train_texts) != len(y):
        raise ValueError(f"{len(y)} train labels for {len(train_texts)} texts")
    if (dev_texts is None) != (dev_labels is None):
        raise ValueError("give both dev_texts and dev_labels, or neither")
    dev_y = None
    if dev_texts is not None:
        dev_texts = list(dev_texts)
        dev_y = torch.as_tensor(list(dev_labels), dtype=torch.long)
        if len(dev_texts) != len(dev_y):
            raise ValueError(f"{len(dev_y)} dev labels for {len(dev_texts)} texts")
    select_by = _check_select_by(select_by, dev_y)
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if num_labels is not None and (int(y.min()) < 0 or int(y.max()) >= num_labels):
        raise ValueError(f"train labels must lie in [0, {num_labels}) (model.config.num_labels)")
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lname = name.lower()
        if name.endswith("bias") or "layernorm" in lname or "layer_norm" in lname or ".norm" in lname:
            no_decay.append(p)
        else:
            decay.append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    total_steps = epochs * math.ceil(len(train_texts) / batch_size)
    warmup = int(warmup_ratio * total_steps)

    def schedule(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def step(idx: torch.Tensor) -> torch.Tensor:
        enc = tokenizer(
            [train_texts[i] for i in idx.tolist()],
            padding=True, truncation=True, max_length=max_length, return_tensors="pt",
        )
        logits = logits_of(model(**_hf_inputs(enc, device)))
        return F.cross_entropy(logits.float(), y[idx].to(device))

    evaluate = None
    if dev_texts is not None:
        def evaluate() -> dict:
            return evaluate_hf(
                model, tokenizer, dev_texts, dev_y.tolist(), max_length=max_length, batch_size=eval_batch_size,
                device=device,
            )

    return _fit(
        model,
        n_train=len(train_texts),
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        device=device,
        step_fn=step,
        optimizer=optimizer,
        scheduler=scheduler,
        evaluate=evaluate,
        select_by=select_by,
        skip_first_epoch=skip_first_epoch,
        early_stopping_patience=early_stopping_patience,
        grad_clip=grad_clip,
        progress=progress,
        desc="fine-tune",
    )
