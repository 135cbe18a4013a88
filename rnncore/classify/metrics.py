"""Scores of a classifier's predictions against the true labels.

Single-label: accuracy = share of examples predicted right; macro-F1 = the
mean over the classes c of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c) (a class
that is never true nor predicted counts F1 = 1: nothing to get wrong).
Multi-label (indicator matrices): accuracy is the exact-match ratio (every
label of an example right), macro-F1 the same per-class mean, each class a
binary problem.
"""
import numpy as np

__all__ = ["accuracy", "macro_f1", "scores"]


def _indicators(y, num_classes):
    """Class indices (N,) -> one-hot (N, C); (N, C) indicators kept (as bool)."""
    y = np.asarray(y)
    if y.ndim == 1:
        out = np.zeros((y.size, num_classes), bool)
        out[np.arange(y.size), y] = True
        return out
    return y.astype(bool)


def accuracy(y_true, y_pred):
    """Share of rows predicted right (class indices (N,) or indicators (N, C))."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    right = y_true == y_pred if y_true.ndim == 1 else (y_true == y_pred).all(axis=1)
    return float(right.mean())


def macro_f1(y_true, y_pred, num_classes):
    """Mean over the classes of F1 = 2 TP / (2 TP + FP + FN)."""
    t, p = _indicators(y_true, num_classes), _indicators(y_pred, num_classes)
    tp = (t & p).sum(axis=0)
    wrong = (t ^ p).sum(axis=0)  # FP + FN
    f1 = np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 1.0)
    return float(f1.mean())


def scores(y_true, y_pred, num_classes):
    """``{"accuracy", "macro_f1", "examples"}``."""
    return {"accuracy": accuracy(y_true, y_pred),
            "macro_f1": macro_f1(y_true, y_pred, num_classes),
            "examples": int(np.asarray(y_true).shape[0])}
