"""Labelled Korean text files: the one reader every command uses.

NSMC files are TSVs with a header `id  document  label`; documents that contain
`"` are CSV-quoted (as in the official files) and a few are empty. Export's int8
task gate (`--eval-set`), `kobert finetune`, `kobert eval`, `kobert bench` and
the benchmarks all read them here, so they all score the same texts.

They are read from a local directory (`--nsmc-dir`, else $KOBERT_NSMC_DIR, else
`../shared/data/nsmc` next to the repository), or downloaded from the dataset's
official location when that fails and the machine is online.
"""

from __future__ import annotations

import csv
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NSMC_URL = "https://raw.githubusercontent.com/e9t/nsmc/master/ratings_{split}.txt"
NSMC_FILES = {"train": "ratings_train.txt", "test": "ratings_test.txt"}
ID2LABEL = {0: "negative", 1: "positive"}
REPO_ROOT = Path(__file__).resolve().parents[1]
DOWNLOAD_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kobert" / "nsmc"


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


def default_nsmc_dir() -> Path:
    return Path(os.environ.get("KOBERT_NSMC_DIR") or REPO_ROOT.parent / "shared" / "data" / "nsmc")


TEXT_COLUMNS = ("document", "text", "sentence")


def read_labelled_tsv(path: str | Path, limit: int | None = None) -> LabelledTexts:
    """(text, integer label) rows of a TSV with a header: a text column (document, text or
    sentence) and a label column; quote-aware, so NSMC's quoted documents read as the text
    they are. Empty texts are kept as ""."""
    path = Path(path)
    texts, labels = [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t")
            header = [h.strip().lower() for h in next(reader, [])]
            text_column = next((header.index(c) for c in TEXT_COLUMNS if c in header), None)
            if text_column is None or "label" not in header:
                raise ValueError(f"{path}: expected a header with a text column ({', '.join(TEXT_COLUMNS)}) "
                                 f"and a label column, got {header}")
            label_column = header.index("label")
            for row in reader:
                if limit is not None and len(texts) >= limit:
                    break
                if not row:
                    continue
                try:
                    labels.append(int(row[label_column]))
                except (IndexError, ValueError):
                    raise ValueError(f"{path}:{reader.line_num}: label is not an integer: {row!r}") from None
                texts.append(row[text_column] if text_column < len(row) else "")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 (byte {e.start} of a read block)") from None
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


def download_nsmc(dest: Path = DOWNLOAD_CACHE) -> Path:
    """Fetch ratings_{train,test}.txt from the official e9t/nsmc repository into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for split, name in NSMC_FILES.items():
        target = dest / name
        if target.is_file():
            continue
        url = NSMC_URL.format(split=split)
        tmp = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as f:
                f.write(response.read())
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise FileNotFoundError(f"NSMC: could not download {url} ({e}); pass --nsmc-dir with "
                                    f"{' and '.join(NSMC_FILES.values())} or set KOBERT_NSMC_DIR") from None
        os.replace(tmp, target)
    return dest


def locate_nsmc(nsmc_dir: str | Path | None = None) -> Path:
    """A directory holding both NSMC files: the given one, the default, or a fresh download."""
    if nsmc_dir is not None:
        d = Path(nsmc_dir)
        missing = [n for n in NSMC_FILES.values() if not (d / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{d}: missing NSMC file(s) {', '.join(missing)}")
        return d
    for d in (default_nsmc_dir(), DOWNLOAD_CACHE):
        if all((d / n).is_file() for n in NSMC_FILES.values()):
            return d
    return download_nsmc()


