"""Fit-quality and prediction-error measures (pure functions)."""

from __future__ import annotations

import numpy as np


def r2(y, pred) -> float:
    """Coefficient of determination in linear y: 1 - SS_res / SS_tot."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((y - pred) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def mare(y, pred) -> float:
    """Mean absolute relative error |pred - y| / |y|."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return float(np.mean(np.abs(pred - y) / np.abs(y)))


def errors(y, pred) -> dict:
    """The protocol report: mean absolute relative error, R^2, RMSE and the point count."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return {"mare": mare(y, pred), "r2": r2(y, pred),
            "rmse": float(np.sqrt(np.mean((pred - y) ** 2))), "n": int(len(y))}
