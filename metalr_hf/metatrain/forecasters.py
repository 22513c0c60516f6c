"""Small forecasters with a Hugging Face-style interface (``forward(past_values, future_values) → loss, logits``),
used by the benchmark's forecasting task; and M4-like synthetic series (the zoo's ``m4_rnn``). The time-series recipe
uses transformers' own forecasters (PatchTST, PatchTSMixer)."""

from __future__ import annotations

import numpy as np
from torch import nn

__all__ = ["LSTMForecaster", "forecast_metrics", "m4_like_series"]


class _Scaled(nn.Module):
    """Mean scaling, as in HF time-series models: the network sees ``x / mean|x|`` and its loss is scale-free."""

    def encode(self, past_values):
        raise NotImplementedError

    def forward(self, past_values, future_values=None):
        scale = past_values.abs().mean(1, keepdim=True) + 1e-6
        pred = self.encode(past_values / scale) * scale
        out = {"logits": pred}
        if future_values is not None:
            out["loss"] = nn.functional.mse_loss(pred / scale, future_values / scale)
        return out


class LSTMForecaster(_Scaled):
    def __init__(self, prediction_length: int = 8, hidden: int = 32, layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, prediction_length)

    def encode(self, x):
        h, _ = self.lstm(x[..., None])
        return self.head(h[:, -1])


def m4_like_series(n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Trend + seasonality + noise, positive, with a random level: a stand-in for M4 series offline."""
    t = np.arange(length)
    level = rng.uniform(10, 1000, (n, 1))
    trend = rng.normal(0, 0.01, (n, 1)) * t
    period = rng.choice([4, 7, 12], (n, 1))
    season = rng.uniform(0, 0.3, (n, 1)) * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3, (n, 1)))
    noise = rng.normal(0, 0.05, (n, length))
    return level * np.exp(trend + season + noise)


def forecast_metrics(eval_pred) -> dict:
    """MAE and RMSE in the series' own units, from a ``(predictions, targets)`` pair or ``EvalPrediction``."""
    pred, target = eval_pred[0], eval_pred[1]
    err = np.asarray(pred) - np.asarray(target)
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}
