"""Which evaluation sentences also occur in the pretraining corpus (the backbone card's overlap table).

    python -m kobert.training.decontaminate CORPUS... [--data-dir ../shared/data] [--json FILE]

A sentence (the corpus splitter's `regex_split`, whitespace collapsed, at least `MIN_CHARS`
characters) of an evaluation file counts as seen when the same sentence occurs in a corpus
document. Every string field of the evaluation files is read (TSV columns, JSON values), so
KorQuAD contexts and questions, KorSTS pairs and NER sentences are all covered. NSMC reviews
are compared whole. Reported per evaluation file and per corpus file.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

from kobert.training.corpus import iter_documents, regex_split

MIN_CHARS = 20
# What the backbone must never have seen: every evaluation split used by `kobert eval` and the
# KLUE dev files (paths relative to the shared data folder).
EVAL_FILES = (
    "nsmc/ratings_test.txt", "klue/ynat-v1.1_derived/ynat_dev.tsv", "ner/kmou_2016klp/ner.test",
    "ner/kmou_2016klp/ner.dev", "kornlu/KorSTS/sts-dev.tsv", "kornlu/KorSTS/sts-test.tsv",
    "korquad/KorQuAD_v1.0_dev.json", "klue/klue-sts-v1.1/klue-sts-v1.1_dev.json",
    "klue/klue-nli-v1.1/klue-nli-v1.1_dev.json", "klue/klue-ner-v1.1/klue-ner-v1.1_dev.tsv",
    "kornlu/KorNLI/xnli.dev.ko.tsv", "kornlu/KorNLI/xnli.test.ko.tsv",
)


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def sentences(text: str) -> list[str]:
    return [s for s in (normalize(x) for x in regex_split(text)) if len(s) >= MIN_CHARS]


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def eval_units(path: Path) -> set[str]:
    """The sentences of one evaluation file (NSMC: whole reviews; KMOU NER: the raw sentence lines)."""
    if path.suffix == ".json":
        return {s for text in _strings(json.loads(path.read_text(encoding="utf-8"))) for s in sentences(text)}
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.name.startswith("ratings_"):
        rows = csv.DictReader(lines, delimiter="\t")
        return {d for d in (normalize(r["document"] or "") for r in rows) if len(d) >= MIN_CHARS}
    if path.parent.name == "kmou_2016klp":  # "; text", "$tagged text", then token rows: the text is the ";" line
        return {s for line in lines if line.startswith("; ") for s in sentences(line[2:])}
    return {s for line in lines for field in line.split("\t") for s in sentences(field)}


def overlap_report(corpus_files: list[str | Path], data_dir: str | Path) -> dict:
    data_dir = Path(data_dir)
    targets = {name: eval_units(data_dir / name) for name in EVAL_FILES if (data_dir / name).is_file()}
    wanted = set().union(*targets.values()) if targets else set()
    seen_in: dict[str, set[str]] = {}
    for f in corpus_files:
        found = set()
        for doc in iter_documents(f):
            whole = normalize(doc)
            if whole in wanted:
                found.add(whole)
            found.update(s for s in sentences(doc) if s in wanted)
        seen_in[Path(f).name] = found
    seen_anywhere = set().union(*seen_in.values())
    report = {}
    for name, units in targets.items():
        per_file = {corpus: len(units & found) for corpus, found in seen_in.items() if units & found}
        hits = len(units & seen_anywhere)
        report[name] = {"sentences": len(units), "seen": hits, "percent": round(100 * hits / max(1, len(units)), 3),
                        "by_corpus_file": per_file}
    return report


def main() -> None:
    from kobert.datasets import default_data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="+")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    report = overlap_report(args.corpus, args.data_dir or default_data_dir())
    print(f"| evaluation file | sentences (>= {MIN_CHARS} chars) | also in the corpus | % | where |\n|---|---|---|---|---|")
    for name, r in report.items():
        where = ", ".join(f"{k} {v}" for k, v in r["by_corpus_file"].items()) or "-"
        print(f"| {name} | {r['sentences']:,} | {r['seen']:,} | {r['percent']} | {where} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
