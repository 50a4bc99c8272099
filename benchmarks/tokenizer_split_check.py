"""Metaspace `split=True` against `split=False`: the same ids on every staged Korean text, and words.

    nice -n 10 python benchmarks/tokenizer_split_check.py [--data ../shared/data] [--json FILE]

KoBERT's tokenizer.json used Metaspace with `split=False` (one Unigram Viterbi over
the whole text); `split=True` runs it once per whitespace word instead, which gives
`word_ids()` real words (transformers' QA pipeline aligns answers to them). The ids
can only stay the same if no piece spans a "▁" inside it; this script checks that
on every text instead of assuming it:

- texts: all 200,000 NSMC documents (train + test) and every distinct string of the
  KLUE, KorNLU and KorQuAD files in shared data (JSON strings, TSV cells), whole
  (no truncation), no special tokens;
- tokenizers: kobert's pipeline built from each SentencePiece model, KoBERT's own
  (shared data) and the shipped one (kobert/assets/tokenizer), once with each setting;
- counted per model and corpus: id sequences that differ between the settings (must
  be 0), offset lists that differ, decoded texts that differ; and, against the
  `sentencepiece` library with KoBERT's id rule (the independent reference
  tests/test_tokenizer.py uses), exact sequences, tie permutations (the known float32
  residue, see kobert/tokenizer.py) and any other mismatch, for both settings;
- words: texts whose number of words (`max(word_ids) + 1`) differs from
  `len(text.split())` under `split=True`, with examples.

Exits 1 if any id sequence differs between the settings.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core: this runs beside training jobs

REPO = Path(__file__).resolve().parents[1]
KOBERT_MODEL = "reference_vocabs/kobert_tokenizer_78b3253a26.model"
CHUNK = 5_000


def nsmc_documents(data: Path) -> list[str]:
    docs = []
    for split in ("train", "test"):
        with open(data / "nsmc" / f"ratings_{split}.txt", newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle, delimiter="\t")
            next(rows)
            docs.extend(row[1] for row in rows)
    return docs


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _strings(item)


def benchmark_texts(data: Path) -> list[str]:
    """Every distinct string of the KLUE, KorNLU and KorQuAD files (JSON strings, TSV cells)."""
    texts = set()
    for sub in ("klue", "kornlu", "korquad"):
        for path in sorted((data / sub).rglob("*")):
            if path.suffix == ".json":
                texts.update(_strings(json.loads(path.read_text(encoding="utf-8"))))
            elif path.suffix == ".tsv":
                with open(path, newline="", encoding="utf-8") as handle:
                    for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                        texts.update(row)
    return sorted(texts)


class SentencePieceReference:
    """sentencepiece's own encoding mapped to KoBERT ids by the id rule, from the model file alone."""

    def __init__(self, model_file: Path):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        normal = sorted(self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())
                        if not (self.sp.is_unknown(i) or self.sp.is_control(i)))
        self.piece_to_id = {p: i + 5 for i, p in enumerate(normal)}

    def ids(self, text: str) -> list[int]:
        return [0 if self.sp.is_unknown(i) else self.piece_to_id[self.sp.id_to_piece(i)] for i in self.sp.encode(text)]


def with_split(model_file: Path, split: bool):
    from tokenizers import decoders, pre_tokenizers

    from kobert.tokenizer import build_backend_tokenizer

    tok = build_backend_tokenizer(model_file)
    scheme = tok.pre_tokenizer.prepend_scheme
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)
    return tok


def check(model_file: Path, texts: list[str]) -> dict:
    joined, split = with_split(model_file, False), with_split(model_file, True)
    reference = SentencePieceReference(model_file)
    counts = dict(texts=len(texts), ids_differ=0, offsets_differ=0, decode_differs=0,
                  split_true_vs_sentencepiece=dict(exact=0, tie_permutations=0, other=0),
                  split_false_vs_sentencepiece=dict(exact=0, tie_permutations=0, other=0),
                  words_differ_from_str_split=0)
    examples = dict(ids_differ=[], other_vs_sentencepiece=[], words_differ=[])
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start:start + CHUNK]
        a = joined.encode_batch(chunk, add_special_tokens=False)
        b = split.encode_batch(chunk, add_special_tokens=False)
        for text, x, y in zip(chunk, a, b):
            if x.ids != y.ids:
                counts["ids_differ"] += 1
                if len(examples["ids_differ"]) < 5:
                    examples["ids_differ"].append(text)
            counts["offsets_differ"] += x.offsets != y.offsets
            counts["decode_differs"] += joined.decode(x.ids) != split.decode(y.ids)
            want = reference.ids(text)
            for setting, got in (("split_true_vs_sentencepiece", y.ids), ("split_false_vs_sentencepiece", x.ids)):
                kind = "exact" if got == want else "tie_permutations" if sorted(got) == sorted(want) else "other"
                counts[setting][kind] += 1
                if kind == "other" and len(examples["other_vs_sentencepiece"]) < 5:
                    examples["other_vs_sentencepiece"].append(text)
            words = [w for w in y.word_ids if w is not None]
            if (max(words) + 1 if words else 0) != len(text.split()):
                counts["words_differ_from_str_split"] += 1
                if len(examples["words_differ"]) < 5:
                    examples["words_differ"].append(text)
    return {**counts, "examples": examples}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("KOBERT_SHARED_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--json", type=Path, default=None, help="also write the counts here")
    args = parser.parse_args(argv)

    import sentencepiece
    import tokenizers

    corpora = {"nsmc": nsmc_documents(args.data), "klue_kornlu_korquad": benchmark_texts(args.data)}
    models = {"kobert": args.data / KOBERT_MODEL, "shipped": REPO / "kobert" / "assets" / "tokenizer" / "tokenizer.model"}
    began = time.perf_counter()
    results = {name: {corpus: check(model, texts) for corpus, texts in corpora.items()} for name, model in models.items()}
    report = {"tokenizers": tokenizers.__version__, "sentencepiece": sentencepiece.__version__,
              "seconds": round(time.perf_counter() - began, 1), "models": {k: str(v) for k, v in models.items()},
              "results": results}
    print(f"{'model':8} {'corpus':20} {'texts':>7} {'ids differ':>10} {'offsets':>8} {'decode':>7} "
          f"{'sp exact/ties/other (split=True)':>34} {'(split=False)':>20} {'words != split()':>17}")
    for name, per_corpus in results.items():
        for corpus, c in per_corpus.items():
            t, f = c["split_true_vs_sentencepiece"], c["split_false_vs_sentencepiece"]
            print(f"{name:8} {corpus:20} {c['texts']:>7} {c['ids_differ']:>10} {c['offsets_differ']:>8} "
                  f"{c['decode_differs']:>7} {t['exact']:>20}/{t['tie_permutations']}/{t['other']:<6} "
                  f"{f['exact']:>12}/{f['tie_permutations']}/{f['other']:<4} {c['words_differ_from_str_split']:>10}")
    print(f"{report['seconds']} s; tokenizers {tokenizers.__version__}, sentencepiece {sentencepiece.__version__}")
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    differ = sum(c["ids_differ"] for per_corpus in results.values() for c in per_corpus.values())
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
