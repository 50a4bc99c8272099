"""Korean task data: the one set of readers every command uses.

Export's int8 task gate (`--eval-set`), `kobert finetune`, `kobert eval`, `kobert
bench` and the benchmarks all read their data here, so they all score the same
examples.

NSMC files are TSVs with a header `id  document  label`; documents that contain
`"` are CSV-quoted (as in the official files) and a few are empty. They are read
from a local directory (`--nsmc-dir`, else $KOBERT_NSMC_DIR, else `nsmc/` in
the data folder), or downloaded from the dataset's official location (pinned to
one commit, each file checked by sha256) when that fails and the machine is online.

The other tasks (`read_task`: YNAT, KMOU NER, KorSTS, KorQuAD 1.0) are read from
the data folder; see TASK_FILES and each reader for the file formats.

The data folder is one setting, read when it is used (`data_dir`): $KOBERT_DATA_DIR
(or its older name $KOBERT_SHARED_DATA), else `../shared/data` next to a source
checkout, else `${XDG_DATA_HOME:-~/.local/share}/kobert/data` for an installed kobert.
"""

from __future__ import annotations

import csv
import json
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# kobert.mxnet_env imports only the standard library, and knows whether kobert runs from a checkout.
from kobert.mxnet_env import checkout_root

# Pinned to one commit of the official repository, and checked: a download whose sha256 differs is
# discarded (the values are the official files', see the data folder's MANIFEST.md).
NSMC_COMMIT = "cc0670e872d4ac27bfe36c87456783004b39ef6c"
NSMC_URL = f"https://raw.githubusercontent.com/e9t/nsmc/{NSMC_COMMIT}/ratings_{{split}}.txt"
NSMC_FILES = {"train": "ratings_train.txt", "test": "ratings_test.txt"}
NSMC_SHA256 = {"train": "e03b7d14e9e41be8d464a28057cd25d7396c53e67aa7fd5f7e552c59b0ee2940",
               "test": "8ac9f64052f11dbf6ae0acb5e038f03d90a76f0eda7820cfb3a92d02edfcebda"}
ID2LABEL = {0: "negative", 1: "positive"}
DOWNLOAD_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kobert" / "nsmc"
DATA_DIR_ENV = "KOBERT_DATA_DIR"
# Also read, in this order: the older name of the same setting (tests and benchmarks used it).
DATA_DIR_ALIASES = ("KOBERT_SHARED_DATA",)
NSMC_DIR_ENV = "KOBERT_NSMC_DIR"  # NSMC alone somewhere else than the data folder's nsmc/


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


def data_dir() -> Path:
    """The shared data folder (nsmc/, klue/, ner/, kornlu/, korquad/, reference_vocabs/), read at call time."""
    for name in (DATA_DIR_ENV, *DATA_DIR_ALIASES):
        if os.environ.get(name):
            return Path(os.environ[name])
    root = checkout_root()
    if root is not None:
        return root.parent / "shared" / "data"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "kobert" / "data"


def default_data_dir() -> Path:
    """`data_dir()` (the name the readers' callers have used)."""
    return data_dir()


def default_nsmc_dir() -> Path:
    """$KOBERT_NSMC_DIR, else the data folder's nsmc/."""
    return Path(os.environ.get(NSMC_DIR_ENV) or data_dir() / "nsmc")


TEXT_COLUMNS = ("document", "text", "sentence")


def read_labelled_tsv(path: str | Path, limit: int | None = None) -> LabelledTexts:
    """(text, integer label) rows of a TSV with a header: a text column (document, text or
    sentence) and a label column; quote-aware, so NSMC's quoted documents read as the text
    they are. Empty texts are kept as ""."""
    path = Path(path)
    texts, labels = [], []
    header = text_column = label_column = None
    for number, row in _tsv_rows(path):
        if header is None:
            header = [h.strip().lower() for h in row]
            text_column = next((header.index(c) for c in TEXT_COLUMNS if c in header), None)
            if text_column is None or "label" not in header:
                raise ValueError(f"{path}: expected a header with a text column ({', '.join(TEXT_COLUMNS)}) "
                                 f"and a label column, got {header}")
            label_column = header.index("label")
            continue
        if limit is not None and len(texts) >= limit:
            break
        if not row:
            continue
        _check_fields(path, number, row, header)
        try:
            labels.append(int(row[label_column]))
        except ValueError:
            raise ValueError(f"{path}:{number}: label is not an integer: {row!r}") from None
        texts.append(row[text_column])
    if not texts:
        raise ValueError(f"{path}: no labelled rows")
    return LabelledTexts(texts, labels, str(path))


def read_nsmc(path: str | Path, limit: int | None = None) -> LabelledTexts:
    """One NSMC TSV file (id, document, label; labels 0/1)."""
    data = read_labelled_tsv(path, limit)
    bad = next((i for i, label in enumerate(data.labels) if label not in (0, 1)), None)
    if bad is not None:
        raise ValueError(f"{path}: example {bad + 1}: label {data.labels[bad]}, expected 0 or 1")
    return data


def download_nsmc(dest: Path | None = None) -> Path:
    """Fetch ratings_{train,test}.txt from the official e9t/nsmc repository at NSMC_COMMIT into `dest`
    (default: DOWNLOAD_CACHE), each checked against NSMC_SHA256; a file already there is kept only if it
    matches. A mismatch is an error and leaves no file behind."""
    dest = Path(dest) if dest is not None else DOWNLOAD_CACHE
    dest.mkdir(parents=True, exist_ok=True)
    for split, name in NSMC_FILES.items():
        target = dest / name
        if target.is_file() and _sha256(target) == NSMC_SHA256[split]:
            continue
        url = NSMC_URL.format(split=split)
        tmp = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as f:
                while chunk := response.read(2**20):
                    f.write(chunk)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise FileNotFoundError(f"NSMC: could not download {url} ({e}); pass --nsmc-dir with "
                                    f"{' and '.join(NSMC_FILES.values())} or set KOBERT_NSMC_DIR") from None
        got = _sha256(tmp)
        if got != NSMC_SHA256[split]:
            tmp.unlink(missing_ok=True)
            raise ValueError(f"NSMC: {url}: sha256 {got}, expected {NSMC_SHA256[split]}; the download was "
                             "discarded (pass --nsmc-dir with the official files)")
        os.replace(tmp, target)
    return dest


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def locate_nsmc(nsmc_dir: str | Path | None = None) -> Path:
    """A directory holding both NSMC files: the given one, the default, or a fresh download."""
    if nsmc_dir is not None:
        d = Path(nsmc_dir)
        missing = [n for n in NSMC_FILES.values() if not (d / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{d}: missing NSMC file(s) {', '.join(missing)}")
        return d
    d = default_nsmc_dir()
    if all((d / n).is_file() for n in NSMC_FILES.values()):
        return d
    return download_nsmc()  # the download cache, each file checked (and fetched again if it differs)




# --- the other Korean tasks: files under the shared data folder ----------------------------------
#
# Paths are relative to the shared data folder (`data_dir`; its MANIFEST.md says where each file
# comes from). `task_file` finds one and names what is missing when it is not there.

TASK_FILES = {
    ("ynat", "train"): "klue/ynat-v1.1_derived/ynat_train.tsv",
    ("ynat", "eval"): "klue/ynat-v1.1_derived/ynat_dev.tsv",
    ("ner", "train"): "ner/kmou_2016klp/ner.train",
    ("ner", "eval"): "ner/kmou_2016klp/ner.test",
    ("sts", "train"): "kornlu/KorSTS/sts-train.tsv",
    ("sts", "eval"): "kornlu/KorSTS/sts-test.tsv",
    # KorQuAD 1.0 train is not available here: both splits come from dev (see split_by_article).
    ("qa", "train"): "korquad/KorQuAD_v1.0_dev.json",
    ("qa", "eval"): "korquad/KorQuAD_v1.0_dev.json",
}
# KLUE YNAT's label ids (klue-benchmark order); the derived TSVs carry the names.
YNAT_LABELS = ("IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치")
# KMOU 2016klp entity types: person, location, organisation, date, time.
NER_TYPES = ("PS", "LC", "OG", "DT", "TI")
NER_LABELS = ("O",) + tuple(f"{prefix}-{kind}" for kind in NER_TYPES for prefix in ("B", "I"))
# KorQuAD 1.0 has only its dev set here: split by article, this share for training.
QA_TRAIN_SHARE = 0.8
QA_SPLIT_SEED = 0


def task_file(task: str, split: str, data_dir: str | Path | None = None) -> Path:
    """The file of a task's split ("train" or "eval") under the shared data folder."""
    try:
        relative = TASK_FILES[(task, split)]
    except KeyError:
        raise ValueError(f"no {split!r} data for task {task!r}") from None
    path = Path(data_dir or default_data_dir()) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing ({task} {split} data; pass --data-dir with the shared data "
                                "folder, or set KOBERT_DATA_DIR)")
    return path


def _tsv_rows(path: Path, quoting: int = csv.QUOTE_MINIMAL):
    """(line number where the row starts, row) of a TSV. A quote left open, or a quoted field that runs
    over lines (a stray newline), is a ValueError naming the file and the line: the official files
    have neither, and accepting them merges the rows that follow into one example."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t", quoting=quoting, strict=True)
            start = 1
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    reason = ("a quote opened on this line is never closed" if "end of data" in str(e) else
                              f"a stray or unbalanced quote ({str(e).replace(chr(9), 'TAB')})")
                    raise ValueError(f"{path}:{start}: {reason}") from None
                if reader.line_num > start or any("\n" in field or "\r" in field for field in row):
                    raise ValueError(f"{path}:{start}: a quoted field runs over lines {start}-{reader.line_num} "
                                     "(a quote left open, or a newline inside a text?)")
                yield start, row
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 (byte {e.start} of a read block)") from None


def _check_fields(path: Path, number: int, row: list[str], header: list[str]) -> None:
    if len(row) != len(header):
        raise ValueError(f"{path}:{number}: expected {len(header)} tab-separated fields ({', '.join(header)}), "
                         f"got {len(row)}")


def read_ynat(path: str | Path, limit: int | None = None) -> LabelledTexts:
    """KLUE YNAT `label<TAB>title` rows (a `label text` header, or none as in the dev file), quote-aware
    (one train title holds a TAB); labels are ids into YNAT_LABELS."""
    path = Path(path)
    texts, labels = [], []
    for number, row in _tsv_rows(path):
        if limit is not None and len(texts) >= limit:
            break
        if not row or (number == 1 and [c.strip().lower() for c in row] == ["label", "text"]):
            continue
        if len(row) != 2 or row[0] not in YNAT_LABELS:
            raise ValueError(f"{path}:{number}: expected 'label<TAB>title' with a label in "
                             f"{', '.join(YNAT_LABELS)}, got {row!r}")
        labels.append(YNAT_LABELS.index(row[0]))
        texts.append(row[1])
    if not texts:
        raise ValueError(f"{path}: no labelled rows")
    return LabelledTexts(texts, labels, str(path))


@dataclass
class EntitySentence:
    """A sentence and its entities as character spans: (start, end, type), end exclusive."""

    text: str
    spans: list[tuple[int, int, str]]


_KMOU_ENTITY = re.compile(r"<([^<>]*?):([A-Z]{2})>")


def read_kmou_ner(path: str | Path, limit: int | None = None) -> list[EntitySentence]:
    """KMOU 2016klp NER: per sentence a `; raw sentence` line, a `$tagged sentence` line with
    `<words:TYPE>` marks, then morpheme rows (not needed: the marks give the character spans)."""
    path = Path(path)
    sentences: list[EntitySentence] = []
    raw = None
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    for number, line in enumerate(lines, start=1):
        if line.startswith("; "):
            raw = line[2:]
        elif line.startswith("$") and raw is not None:
            sentence = _untag(line[1:])
            if sentence.text != raw:
                raise ValueError(f"{path}:{number}: the tagged sentence without its marks differs from the "
                                 f"raw sentence above it")
            sentences.append(sentence)
            raw = None
            if limit is not None and len(sentences) >= limit:
                break
    if not sentences:
        raise ValueError(f"{path}: no '; sentence' + '$tagged sentence' pairs (not a KMOU NER file?)")
    return sentences


def _untag(tagged: str) -> EntitySentence:
    parts, spans, position, length = [], [], 0, 0
    for mark in _KMOU_ENTITY.finditer(tagged):
        before = tagged[position:mark.start()]
        parts += [before, mark.group(1)]
        length += len(before)
        spans.append((length, length + len(mark.group(1)), mark.group(2)))
        length += len(mark.group(1))
        position = mark.end()
    parts.append(tagged[position:])
    return EntitySentence("".join(parts), spans)


@dataclass
class ScoredPairs:
    firsts: list[str]
    seconds: list[str]
    scores: list[float]
    source: str

    def __len__(self) -> int:
        return len(self.scores)


def read_korsts(path: str | Path, limit: int | None = None) -> ScoredPairs:
    """KorSTS TSV (genre filename year id score sentence1 sentence2, with a header). Not quote-aware:
    sentences contain bare `"` characters, as in the official reader (csv.QUOTE_NONE)."""
    path = Path(path)
    firsts, seconds, scores = [], [], []
    header = None
    for number, row in _tsv_rows(path, quoting=csv.QUOTE_NONE):
        if header is None:
            header = row
            if not {"score", "sentence1", "sentence2"} <= set(header):
                raise ValueError(f"{path}: expected a header with score, sentence1, sentence2; got {header}")
            continue
        if limit is not None and len(scores) >= limit:
            break
        if not row:
            continue
        _check_fields(path, number, row, header)
        fields = dict(zip(header, row))
        try:
            scores.append(float(fields["score"]))
            firsts.append(fields["sentence1"])
            seconds.append(fields["sentence2"])
        except (KeyError, ValueError):
            raise ValueError(f"{path}:{number}: expected {len(header)} fields with a numeric score, got {row!r}") from None
    if not scores:
        raise ValueError(f"{path}: no scored pairs")
    return ScoredPairs(firsts, seconds, scores, str(path))


@dataclass
class QuestionExample:
    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]  # (text, character start in context)
    article: str


def read_korquad(path: str | Path) -> list[QuestionExample]:
    """Every question of a KorQuAD 1.0 (SQuAD-format) JSON file, with its article title."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a SQuAD-format JSON file ({e})") from None
    examples = []
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = [(a["text"], int(a["answer_start"])) for a in qa["answers"]]
                examples.append(QuestionExample(str(qa["id"]), qa["question"], paragraph["context"], answers,
                                                article["title"]))
    if not examples:
        raise ValueError(f"{path}: no questions")
    return examples


def split_by_article(examples: list[QuestionExample], train_share: float = QA_TRAIN_SHARE,
                     seed: int = QA_SPLIT_SEED) -> tuple[list[QuestionExample], list[QuestionExample]]:
    """(train, held-out): whole articles shuffled with `seed`, the first `train_share` of them for training,
    so no context of the held-out part was seen in training."""
    import random

    titles = sorted({e.article for e in examples})
    random.Random(seed).shuffle(titles)
    train_titles = set(titles[:round(train_share * len(titles))])
    return ([e for e in examples if e.article in train_titles], [e for e in examples if e.article not in train_titles])


def read_task(task: str, split: str, data_dir: str | Path | None = None, limit: int | None = None):
    """A task's train or eval data: LabelledTexts (nsmc, ynat), EntitySentences (ner), ScoredPairs (sts),
    QuestionExamples (qa: train = 80 % of KorQuAD dev's articles, eval = the other 20 %)."""
    if task == "nsmc":
        base = Path(data_dir) / "nsmc" if data_dir else None
        return read_nsmc(locate_nsmc(base) / NSMC_FILES["train" if split == "train" else "test"], limit)
    path = task_file(task, split, data_dir)
    if task == "ynat":
        return read_ynat(path, limit)
    if task == "ner":
        return read_kmou_ner(path, limit)
    if task == "sts":
        return read_korsts(path, limit)
    if task == "qa":
        train, held_out = split_by_article(read_korquad(path))
        chosen = train if split == "train" else held_out
        return chosen[:limit] if limit is not None else chosen
    raise ValueError(f"unknown task {task!r}")


def read_task_file(task: str, path: str | Path, limit: int | None = None):
    """One file in a task's own format, whole (a KorQuAD file is not split by article here)."""
    readers = {"nsmc": read_nsmc, "ynat": read_ynat, "ner": read_kmou_ner, "sts": read_korsts}
    if task == "qa":
        examples = read_korquad(path)
        return examples[:limit] if limit is not None else examples
    if task not in readers:
        raise ValueError(f"unknown task {task!r}")
    return readers[task](path, limit)
