"""Fine-tune the shipped backbone on NSMC in Keras (`model.fit`) and in torch (`kobert finetune nsmc`), one table.

    python benchmarks/keras_nsmc.py --out runs/keras-nsmc                          the whole of NSMC, 2 epochs
    python benchmarks/keras_nsmc.py --train-limit 64 --eval-limit 64 --epochs 1 --out /tmp/kn    a dry run

Both sides start from `kobert/assets/backbone` with a fresh two-label head and see the same data: the first
`--train-limit` reviews of ratings_train.txt and the first `--eval-limit` of ratings_test.txt, written once
to `OUT/nsmc/` and given to both. Same epochs, peak learning rate, batch size and maximum length, and the
torch recipe's optimizer on both sides: AdamW (weight decay 0.01, none on biases and LayerNorm, epsilon
1e-8), global gradient-norm clipping at 1.0, linear warmup over the first 10 % of steps, then linear decay
to 0.

- Keras: `kobert export backbone --to keras`, then docs/deploy/keras.md's recipe: KerasHub's
  `BertTextClassifier` on the exported backbone with the export's `TextClassifierPreprocessor`, `fit` on
  raw `(text, label)` batches, accuracy of `predict` on raw texts. fp32.
- torch: `kobert finetune nsmc --checkpoint backbone` (transformers' `BertForSequenceClassification`;
  bf16 autocast where the CPU has AVX512-BF16/AMX, as the recipe does), accuracy from its `eval.json`.

Where they still differ, by design of each framework: the head's random initialisation and the shuffling
(seeded, not shared), and Keras' Adam on embeddings under `fit` (docs/deploy/keras.md, "Training").
Writes `OUT/keras_nsmc.json` and prints the table. Without NSMC (`../shared/data/nsmc`, or
$KOBERT_NSMC_DIR) it says so and exits 0. Run it on idle cores: it trains two models.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KOBERT = [sys.executable, "-m", "kobert.cli"]  # this interpreter's kobert (PYTHONPATH kept)
WARMUP_RATIO, WEIGHT_DECAY, EPSILON, CLIP_NORM, SEED = 0.1, 0.01, 1e-8, 1.0, 0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-limit", type=int, default=None, help="first N train reviews (default: all 150,000)")
    parser.add_argument("--eval-limit", type=int, default=None, help="first N test reviews (default: all 50,000)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, required=True, help="a folder for the slice, both models and the JSON")
    return parser.parse_args(argv)


# --- the data: one slice, written once, read by both sides ----------------------------------------


def write_slice(args, out: Path):
    """OUT/nsmc/ratings_{train,test}.txt: the first N rows of each file, re-read to check; None without NSMC."""
    from kobert.datasets import NSMC_FILES, default_nsmc_dir, read_nsmc

    source = default_nsmc_dir()
    if not all((source / name).is_file() for name in NSMC_FILES.values()):
        return None
    folder = out / "nsmc"
    folder.mkdir(parents=True, exist_ok=True)
    limits = {"train": args.train_limit, "test": args.eval_limit}
    for split, name in NSMC_FILES.items():
        data = read_nsmc(source / name, limits["train" if split == "train" else "test"])
        with open(folder / name, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["id", "document", "label"])
            writer.writerows([i, text, label] for i, (text, label) in enumerate(zip(data.texts, data.labels)))
        if read_nsmc(folder / name).texts != data.texts:  # the slice must read back as the same reviews
            raise SystemExit(f"{folder / name}: the written slice does not read back as {source / name}")
    return folder


# --- torch: kobert's recipe --------------------------------------------------------------------


def torch_leg(args, slice_dir: Path, out: Path) -> dict:
    started = time.perf_counter()
    run([*KOBERT, "finetune", "nsmc", "--checkpoint", "backbone", "--out", str(out / "torch"),
         "--nsmc-dir", str(slice_dir), "--epochs", str(args.epochs), "--lr", str(args.lr),
         "--max-length", str(args.max_length), "--batch-size", str(args.batch_size), "--seed", str(SEED),
         "--device", "cpu", "--quiet"])
    result = json.loads((out / "torch" / "eval.json").read_text(encoding="utf-8"))
    return {"accuracy": 100 * result["accuracy"], "train_seconds": result["train_seconds"],
            "wall_seconds": round(time.perf_counter() - started, 1), "steps": result["steps"],
            "eval_examples": result["eval_examples"], "precision": torch_precision()}


def torch_precision() -> str:
    """What `kobert finetune` chose on this CPU (precision "auto"; --device cpu)."""
    from kobert.training.pretrain import use_bf16

    return "bf16 autocast" if use_bf16("auto", cuda=False) else "fp32"


# --- Keras: docs/deploy/keras.md's recipe ------------------------------------------------------------


def keras_leg(args, slice_dir: Path, out: Path) -> dict:
    from kobert.datasets import NSMC_FILES, read_nsmc

    started = time.perf_counter()
    exported = out / "backbone-keras"
    run([*KOBERT, "export", "backbone", "--to", "keras", "--tokenizer", str(REPO / "kobert" / "assets" / "tokenizer"),
         "--out", str(exported), "--force", "--quiet"])
    train, test = (read_nsmc(slice_dir / NSMC_FILES[split]) for split in ("train", "test"))
    model = keras_classifier(exported / "keras", args.max_length)
    steps = args.epochs * math.ceil(len(train.texts) / args.batch_size)
    compile_like_torch(model, args.lr, steps)
    import numpy as np
    import tensorflow as tf

    data = (tf.data.Dataset.from_tensor_slices((train.texts, train.labels))
            .shuffle(len(train.texts), seed=SEED, reshuffle_each_iteration=True).batch(args.batch_size))
    fit_started = time.perf_counter()
    model.fit(data, epochs=args.epochs, verbose=2)
    train_seconds = time.perf_counter() - fit_started
    logits = model.predict(np.array(test.texts, dtype=object), batch_size=2 * args.batch_size, verbose=0)
    accuracy = 100 * float(np.mean(np.argmax(logits, axis=-1) == np.asarray(test.labels)))
    model.save(out / "keras-tuned.keras")  # `kobert import keras` reads it back (docs/deploy/keras.md)
    return {"accuracy": accuracy, "train_seconds": round(train_seconds, 1),
            "wall_seconds": round(time.perf_counter() - started, 1), "steps": steps,
            "eval_examples": len(test.texts), "precision": "fp32"}


def keras_classifier(artifact: Path, max_length: int):
    """KerasHub's BertTextClassifier (fresh two-label head) on the exported backbone, with its preprocessor."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(SEED)
    encoder = keras.saving.load_model(artifact / "model.keras")
    tokenizer = keras_hub.models.DebertaV3Tokenizer(proto=str(artifact / "tokenizer.model"))
    preprocessor = keras_hub.models.TextClassifierPreprocessor(tokenizer, sequence_length=max_length)
    return keras_hub.models.BertTextClassifier(encoder.get_layer("backbone"), num_classes=2, preprocessor=preprocessor)


def compile_like_torch(model, lr: float, steps: int) -> None:
    """kobert finetune's optimizer in Keras: AdamW, no decay on biases/LayerNorm, clipping, warmup then linear decay."""
    import keras

    warmup = max(1, int(WARMUP_RATIO * steps))

    class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
        """torch's LambdaLR in kobert finetune, at the optimizer's step count (0 before the first step)."""

        def __call__(self, step):
            step = keras.ops.cast(step, "float32")
            rising = (step + 1) / warmup
            falling = keras.ops.maximum(0.0, (steps - step) / max(1, steps - warmup))
            return lr * keras.ops.where(step < warmup, rising, falling)

        def get_config(self):
            return {"lr": lr, "steps": steps, "warmup": warmup}

    optimizer = keras.optimizers.AdamW(learning_rate=WarmupLinearDecay(), weight_decay=WEIGHT_DECAY, epsilon=EPSILON,
                                       global_clipnorm=CLIP_NORM)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["sparse_categorical_accuracy"])


# --- the table -----------------------------------------------------------------------------------


def run(command: list[str]) -> None:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:5])}... failed ({done.returncode}):\n{done.stderr[-3000:]}")


def cpu_model() -> str:
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def table(args, keras_result: dict, torch_result: dict) -> str:
    rows = [("Keras (model.fit)", keras_result), ("torch (kobert finetune)", torch_result)]
    lines = ["| recipe | accuracy % | train s | wall s | steps | precision |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['accuracy']:.2f} | {r['train_seconds']} | {r['wall_seconds']} | {r['steps']} | "
              f"{r['precision']} |" for name, r in rows]
    difference = keras_result["accuracy"] - torch_result["accuracy"]
    lines.append(f"\nKeras - torch: {difference:+.2f} points on the same {keras_result['eval_examples']} test reviews; "
                 f"train limit {args.train_limit or 'all'}, {args.epochs} epoch(s), lr {args.lr}, batch "
                 f"{args.batch_size}, max length {args.max_length}; CPU: {cpu_model()}. Wall time: Keras' "
                 "includes `kobert export backbone --to keras` and its parity gate; torch's its tokenizing and eval.")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    slice_dir = write_slice(args, args.out)
    if slice_dir is None:
        print("skipped: no NSMC (ratings_train.txt, ratings_test.txt) in ../shared/data/nsmc or $KOBERT_NSMC_DIR")
        return 0
    keras_result = keras_leg(args, slice_dir, args.out)
    torch_result = torch_leg(args, slice_dir, args.out)
    report = {"keras": keras_result, "torch": torch_result, "cpu": cpu_model(),
              "difference_points": keras_result["accuracy"] - torch_result["accuracy"],
              "command": "python benchmarks/keras_nsmc.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d", time.gmtime())}
    (args.out / "keras_nsmc.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(table(args, keras_result, torch_result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
