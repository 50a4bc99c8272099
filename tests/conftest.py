"""Shared pytest fixtures.  Each owner keeps fixtures in a labelled section."""

# ---------------------------------------------------------------------------
# Tokenizer fixtures (owner: tokenizer; tests/test_tokenizer*.py)
# ---------------------------------------------------------------------------
import random
from pathlib import Path

import pytest

KOBERT_SP_MODEL = "reference_vocabs/kobert_tokenizer_78b3253a26.model"


def shared_data_dir() -> Path:
    """kobert's one data-folder setting (`kobert.datasets.data_dir`: $KOBERT_DATA_DIR or $KOBERT_SHARED_DATA,
    else <repo>/../shared/data); it may not exist on a plain clone."""
    from kobert.datasets import data_dir

    return data_dir()


def python_sentencepiece(model_file):
    """text -> KoBERT ids by Python sentencepiece and the id rule alone (as tests/test_tokenizer.py): the
    independent reference for a tokenizer's ids (also read by benchmarks/tf_text_bench.py)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    normal = sorted(sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_unknown(i) or sp.is_control(i)))
    kobert_id = {piece: i + 5 for i, piece in enumerate(normal)}
    return lambda text: [0 if sp.is_unknown(i) else kobert_id[sp.id_to_piece(i)] for i in sp.encode(text)]


def generate_korean_documents(n: int, seed: int = 0) -> list[str]:
    """Korean-ish web text: syllables, compatibility jamo (ㅋㅠ), repeated punctuation, Latin, digits."""
    rng = random.Random(seed)
    syllables = [chr(0xAC00 + rng.randrange(11172)) for _ in range(300)] + list("이가은는을를의에서고다요한국어영화")
    jamo = list("ㅋㅎㅠㅜㅡㄱㄷㅇㄳㅄ")
    extras = ["...", "....", "!!", "??", "~", "ㅋㅋㅋ", "ㅠㅠ", "ㅋㅠㅠ", "ok", "BERT", "2019", ",", "^^", "😀", "漢字"]
    docs = []
    for _ in range(n):
        words = []
        for _ in range(rng.randrange(1, 15)):
            kind = rng.random()
            if kind < 0.7:
                words.append("".join(rng.choice(syllables) for _ in range(rng.randrange(1, 5))))
            elif kind < 0.85:
                words.append("".join(rng.choice(jamo) for _ in range(rng.randrange(1, 5))))
            else:
                words.append(rng.choice(extras))
        docs.append(" ".join(words) if rng.random() < 0.8 else "".join(words))
    return docs


@pytest.fixture(scope="session")
def kobert_sp_model_file() -> Path:
    """The real KoBERT SentencePiece model from shared data (skip when absent)."""
    path = shared_data_dir() / KOBERT_SP_MODEL
    if not path.is_file():
        pytest.skip(f"{path}: shared data not available")
    return path


@pytest.fixture(scope="session")
def generated_corpus(tmp_path_factory) -> Path:
    """A small generated training corpus (plain text, one document per line)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(generate_korean_documents(4000, seed=1)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_tokenizer_dir(tmp_path_factory, generated_corpus) -> Path:
    """A small KoBERT-format tokenizer trained on the generated corpus (works without shared data)."""
    from kobert.tokenizer_train import train_tokenizer

    return train_tokenizer([generated_corpus], tmp_path_factory.mktemp("small_tok"), vocab_size=600, seed=0)


# ---------------------------------------------------------------------------
# Registry fixtures (owner: architecture; tests/test_registry.py, tests/test_bench.py)
# ---------------------------------------------------------------------------


class CopiedOnnx:
    """A throwaway target: the fp32 ONNX file copied under another name, opened by the onnx runtime."""

    name = "throwaway-onnx"

    def export(self, weights, export_dir):
        import shutil

        from kobert.exporters import ExportedArtifact
        from kobert.config import INPUTS

        target = Path(export_dir) / self.name / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(export_dir) / "onnx" / "model.onnx", target)
        return ExportedArtifact(self.name, [f"{self.name}/model.onnx"],
                                [{"name": n, "dtype": d} for n, d in INPUTS],
                                list(weights.config.output_names), "copy")


copied_onnx = CopiedOnnx()


@pytest.fixture
def throwaway_target():
    """A target registered through the registry alone (one row), removed afterwards."""
    from kobert import registry

    target = registry.register_target(registry.Target(
        CopiedOnnx.name, "conftest:copied_onnx", "onnx", built_from="onnx", bench_label="throwaway copy",
        summary="a test's copy of the fp32 ONNX"))
    yield target
    registry.unregister_target(target.name)
