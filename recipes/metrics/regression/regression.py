"""Regression and forecasting errors: mean absolute error, mean squared error and its root."""

import datasets
import evaluate
import numpy as np


class Regression(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions, references: real values (one per example, or a sequence each)",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references):
        err = np.asarray(predictions, dtype=np.float64) - np.asarray(references, dtype=np.float64)
        mse = float((err**2).mean())
        return {"mae": float(np.abs(err).mean()), "mse": mse, "rmse": mse**0.5}
