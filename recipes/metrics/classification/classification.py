"""Classification from logits: accuracy, macro F1 and, with at least 5 classes, top-5 accuracy."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import f1_score


class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: the logits of each example; references: class ids",
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        logits, labels = np.asarray(predictions), np.asarray(references)
        pred = logits.argmax(-1)
        out = {
            "accuracy": float((pred == labels).mean()),
            "f1": float(f1_score(labels, pred, average="macro")),
        }
        if logits.shape[-1] >= 5:
            top5 = np.argsort(-logits, axis=-1)[:, :5]
            out["top5_accuracy"] = float((top5 == labels[:, None]).any(-1).mean())
        return out
