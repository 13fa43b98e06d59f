"""The classification metrics training and evaluation share, in pure NumPy.

Early stopping (``lmforge.train``), the compress stage and the evaluation report all score
predictions with these functions, so they sit on the ground floor, below every stage.
Every score derives from one confusion matrix, so a class absent from the data gets
precision, recall and F1 of 0 with support 0 (no NaN, no warning) and still counts in the
macro average. The definitions match scikit-learn's ``zero_division=0`` behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmforge.errors import DataError

__all__ = [
    "baseline_scores",
    "beats_baselines",
    "class_indices",
    "confusion_matrix",
    "macro_f1",
    "per_class_scores",
    "required_score",
    "safe_divide",
]


def class_indices(y: Sequence[int] | np.ndarray, n_classes: int, name: str) -> np.ndarray:
    """``y`` as an int64 array of class indices in ``[0, n_classes)``; ``name`` is for the message."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D sequence of class indices, got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise DataError(f"{name} must hold integer class indices, got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        raise DataError(
            f"{name} holds class index {int(arr[bad][0])}, outside [0, {n_classes - 1}] "
            f"for {n_classes} classes."
        )
    return arr


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` element-wise, 0 where ``den`` is 0."""
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_class_scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = safe_divide(tp, predicted)
    recall = safe_divide(tp, support)
    # 2TP / (2TP + FP + FN) equals 2PR / (P + R) and is 0, not NaN, when TP is 0.
    f1 = safe_divide(2 * tp, support + predicted)
    return precision, recall, f1, support


def macro_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int) -> float:
    """Unweighted mean F1 over all ``n_classes`` classes (absent classes count as 0).

    Args:
        y_true: True class indices, shape (N,).
        y_pred: Predicted class indices, shape (N,).
        n_classes: Number of classes; every class counts in the mean, seen or not.

    Returns:
        Macro-averaged F1 in [0, 1].

    Raises:
        DataError: If the inputs are empty, differ in length or hold out-of-range indices.
    """
    if n_classes < 1:
        raise DataError(f"n_classes must be at least 1, got {n_classes}.")
    t = class_indices(y_true, n_classes, "y_true")
    p = class_indices(y_pred, n_classes, "y_pred")
    if t.size != p.size:
        raise DataError(f"y_true has {t.size} entries but y_pred has {p.size}; they must match.")
    if t.size == 0:
        raise DataError("Cannot compute macro-F1 of zero examples.")
    _, _, f1, _ = per_class_scores(confusion_matrix(t, p, n_classes))
    return float(f1.mean())


def baseline_scores(y_train: Sequence[int] | np.ndarray, y_test: Sequence[int] | np.ndarray, n_classes: int,
                    seed: int) -> dict[str, dict[str, float | int]]:
    """Accuracy and macro-F1 on ``y_test`` of two models that never read a text.

    ``majority`` always answers the most frequent training class (ties: the lowest index);
    ``stratified`` draws each answer at random from the training class frequencies, seeded
    by ``seed`` (NumPy's ``default_rng``), so the numbers repeat. A trained model that does
    not beat them learned nothing from the texts.
    """
    train = class_indices(y_train, n_classes, "y_train")
    test = class_indices(y_test, n_classes, "y_test")
    if train.size == 0 or test.size == 0:
        raise DataError("Baselines need at least one training and one test example.")
    counts = np.bincount(train, minlength=n_classes)
    majority = int(np.argmax(counts))
    guess = np.random.default_rng(seed).choice(n_classes, size=test.size, p=counts / counts.sum())
    out: dict[str, dict[str, float | int]] = {}
    for name, pred in (("majority", np.full(test.size, majority)), ("stratified", guess)):
        out[name] = {"accuracy": float((pred == test).mean()), "macro_f1": macro_f1(test, pred, n_classes)}
    out["majority"]["class"] = majority
    out["stratified"]["seed"] = seed
    return out


def required_score(baseline: float, margin: float) -> float:
    """The score that beats ``baseline`` by ``margin``: it closes ``margin`` of the gap to 1."""
    return baseline + margin * (1.0 - baseline)


def beats_baselines(accuracy: float, macro: float, baselines: dict[str, dict[str, float | int]],
                    margin: float) -> dict[str, float | bool]:
    """Whether a model's scores beat the baselines of :func:`baseline_scores` by ``margin``.

    Both the accuracy and the macro-F1 must reach :func:`required_score` of the majority
    class's. The stratified guess is reported beside it but not held against the model: one
    seeded draw on a small test split can score well above its expectation by luck.
    """
    need_acc = required_score(float(baselines["majority"]["accuracy"]), margin)
    need_f1 = required_score(float(baselines["majority"]["macro_f1"]), margin)
    return {
        "margin": margin,
        "required_accuracy": round(need_acc, 6),
        "required_macro_f1": round(need_f1, 6),
        "beats": bool(accuracy >= need_acc and macro >= need_f1),
    }
