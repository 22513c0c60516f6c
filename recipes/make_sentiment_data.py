#!/usr/bin/env python
"""Write a small local sentiment dataset (CSV with `sentence,label`) for the offline CPU recipe.

Sentences contrast two clauses ("the plot was dull but the acting was superb"); the label is the sentiment of
the clause after "but", and 10 % of labels are flipped, so that a model must read the structure, not one word.

    python recipes/make_sentiment_data.py --output_dir data/sentiment   # writes train.csv (2000) and dev.csv (500)
"""

import argparse
import csv
import os
import random

POSITIVE = ["superb", "moving", "charming", "brilliant", "delightful", "gripping", "warm", "clever", "beautiful"]
NEGATIVE = ["dull", "clumsy", "tedious", "awful", "flat", "confusing", "lifeless", "predictable", "shallow"]
SUBJECTS = ["the plot", "the acting", "the music", "the script", "the ending", "the camera work", "the cast"]


def sentence(rng: random.Random) -> tuple[str, int]:
    label = rng.randint(0, 1)
    first = rng.choice(NEGATIVE if label else POSITIVE)
    second = rng.choice(POSITIVE if label else NEGATIVE)
    s1, s2 = rng.sample(SUBJECTS, 2)
    text = f"{s1} was {first} but {s2} was {second}"
    return text, (1 - label) if rng.random() < 0.1 else label


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    for name, n in (("train", 2000), ("dev", 500)):
        with open(os.path.join(args.output_dir, f"{name}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "label"])
            writer.writerows(sentence(rng) for _ in range(n))
    print(f"wrote {args.output_dir}/train.csv and dev.csv")


if __name__ == "__main__":
    main()
