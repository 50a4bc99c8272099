"""`kobert eval nsmc DIR`: task accuracy of one export through every runtime, side by side.

The texts are tokenized once with the export's tokenizer; every runtime then
classifies the same batches, so any difference in accuracy comes from the
runtime, not the input. Agreement is the share of predictions identical to the
torch reference's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np



def runs(manifest: dict) -> list[tuple[str, str]]:
    """(runtime, artifact) for the torch reference, then every artifact of the export (registry order)."""
    from kobert import registry

    return [("torch", registry.REFERENCE)] + [(registry.TARGETS[name].runtime, name) for name in registry.TARGETS
                                              if name in manifest["artifacts"]]


@dataclass
class RuntimeAccuracy:
    name: str
    accuracy: float
    agreement: float
    seconds: float


def _batches(encoded: dict[str, np.ndarray], lengths: np.ndarray, batch_size: int):
    """Batches of similar length (sorted), each cut to its longest row: no work on padding."""
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = int(lengths[rows].max())
        yield rows, {name: array[rows, :width] for name, array in encoded.items()}


def predict(runtime, encoded: dict[str, np.ndarray], lengths: np.ndarray, batch_size: int) -> np.ndarray:
    predictions = np.empty(len(lengths), dtype=np.int64)
    for rows, batch in _batches(encoded, lengths, batch_size):
        predictions[rows] = runtime.run(**batch)["logits"].argmax(-1)
    return predictions


def evaluate_export(export_dir, texts: list[str], labels: list[int], batch_size: int = 128,
                    which: list[tuple[str, str]] | None = None) -> list[RuntimeAccuracy]:
    from kobert import runtimes
    from kobert.progress import say
    from kobert.runtimes.base import read_manifest

    labels = np.asarray(labels)
    results, reference = [], None
    encoded = lengths = None
    for runtime_name, artifact in which or runs(read_manifest(export_dir)):
        say(f"eval: {artifact} ({runtime_name})")
        with runtimes.load(export_dir, runtime=runtime_name, artifact=artifact) as runtime:
            if encoded is None:
                encoded = runtime.encode(texts)
                lengths = encoded["attention_mask"].sum(axis=1)
            start = time.perf_counter()
            predictions = predict(runtime, encoded, lengths, batch_size)
            seconds = time.perf_counter() - start
        reference = predictions if reference is None else reference
        results.append(RuntimeAccuracy(runtime_name if artifact == "reference" else artifact, float((predictions == labels).mean()),
                                       float((predictions == reference).mean()), seconds))
    return results


def table(results: list[RuntimeAccuracy], examples: int) -> str:
    rows = [f"| runtime | accuracy ({examples:,} reviews) | agreement with torch | seconds |", "|---|---|---|---|"]
    rows += [f"| {r.name} | {100 * r.accuracy:.2f} % | {100 * r.agreement:.3f} % | {r.seconds:.1f} |" for r in results]
    return "\n".join(rows)
