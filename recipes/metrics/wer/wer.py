"""Word error rate: word-level edit distance over the number of reference words (jiwer)."""

import datasets
import evaluate
import jiwer


class Wer(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions, references: transcriptions",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        return {"wer": float(jiwer.wer(list(references), list(predictions)))}
