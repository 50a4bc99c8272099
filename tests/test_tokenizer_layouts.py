"""Every tokenizer a KoBERT checkpoint folder may carry gives KoBERT's ids (`kobert.tokenizer.find_tokenizer_source`).

The folders are written the way users get them: transformers' own `XLNetTokenizer` (what
`skt/kobert-base-v1` declares) saving a SentencePiece model, the model file itself under the names
transformers and KoBERT use, a KoBERT-ordered `spiece.model` (pieces 0-4 are KoBERT's specials, as the
hub's is: its KoBERTTokenizer uses the model's own ids), and kobert's own `tokenizer.json`.
The judge is sentencepiece on the model file plus KoBERT's id rule and `[CLS] A [SEP] (B [SEP])`.
Runs everywhere on a model trained here; on KoBERT's own model too when ../shared/data is present.
"""

import json
import shutil
from pathlib import Path

import pytest

from test_tokenizer import PUBLISHED_IDS, PUBLISHED_TEXT, Reference

SENTENCES = [PUBLISHED_TEXT, "이 영화 정말 재밌어요 ㅋㅋ", "배우들 연기가 최고였다. 다시 보고 싶다!", "BERT는 한국어를 잘 안다",
             "ㅋㅠㅠ 진짜ㅄ 가ㄳ", "", "   "]
PAIRS = [("한국어 모델을", "공유합니다."), ("오늘 날씨 어때?", "맑고 따뜻해요 ^^")]
CLS, SEP = 2, 3


@pytest.fixture(scope="module", params=["trained-here", "kobert"])
def model_file(request, small_tokenizer_dir):
    """A SentencePiece model as KoBERT's `.spiece` is: <unk> <s> </s> then the pieces."""
    if request.param == "kobert":
        return request.getfixturevalue("kobert_sp_model_file")
    return small_tokenizer_dir / "tokenizer.model"


def kobert_ordered_model(model_file, out):
    """The model rewritten as skt/kobert-base-v1's `spiece.model` is: [UNK] [PAD] [CLS] [SEP] [MASK], then the
    pieces in KoBERT's order, so that sentencepiece's own ids are KoBERT's."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    normal = sorted((p.piece, p.score) for p in proto.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL)
    del proto.pieces[:]
    proto.pieces.add(piece="[UNK]", score=0.0, type=pb.ModelProto.SentencePiece.UNKNOWN)
    for special in ("[PAD]", "[CLS]", "[SEP]", "[MASK]"):
        proto.pieces.add(piece=special, score=0.0, type=pb.ModelProto.SentencePiece.CONTROL)
    for piece, score in normal:
        proto.pieces.add(piece=piece, score=score)
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id, proto.trainer_spec.eos_id = 0, -1, -1
    proto.trainer_spec.pad_id = 1
    out.write_bytes(proto.SerializeToString())
    return out


def xlnet_save_pretrained(folder_with_spiece, out):
    """transformers' XLNetTokenizer loaded from `spiece.model` and saved: tokenizer.json (SentencePiece ids,
    `A <sep> <cls>`), tokenizer_config.json naming XLNetTokenizer, and in transformers 5 no spiece.model."""
    from transformers import XLNetTokenizer

    XLNetTokenizer.from_pretrained(str(folder_with_spiece)).save_pretrained(str(out))
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "XLNetTokenizer"
    return out


def checkpoint_folder(tmp_path, model_file, layout):
    """A folder holding the tokenizer files of `layout`, as a checkpoint folder would."""
    from kobert.tokenizer import get_tokenizer

    folder = tmp_path / layout
    folder.mkdir()
    if layout == "spiece.model (transformers 4 XLNetTokenizer)":
        shutil.copyfile(model_file, folder / "spiece.model")
        (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLNetTokenizer"}))
    elif layout == "KoBERT .spiece":
        shutil.copyfile(model_file, folder / "kobert_news_wiki_ko_cased-1087f8699e.spiece")
    elif layout.startswith("tokenizer.json (transformers 5 XLNetTokenizer)"):
        (tmp_path / "with-spiece").mkdir(exist_ok=True)
        shutil.copyfile(model_file, tmp_path / "with-spiece" / "spiece.model")
        folder.rmdir()
        xlnet_save_pretrained(tmp_path / "with-spiece", folder)
        assert not (folder / "spiece.model").exists()
        if layout.endswith("+ spiece.model"):  # what transformers 4's XLNetTokenizerFast writes
            shutil.copyfile(model_file, folder / "spiece.model")
    elif layout == "kobert tokenizer.json":
        get_tokenizer(model_file).save_pretrained(str(folder))
    return folder


LAYOUTS = ["spiece.model (transformers 4 XLNetTokenizer)", "KoBERT .spiece",
           "tokenizer.json (transformers 5 XLNetTokenizer)", "tokenizer.json (transformers 5 XLNetTokenizer) + spiece.model",
           "kobert tokenizer.json"]


def assert_kobert_ids(tokenizer, reference):
    for text in SENTENCES:
        assert tokenizer(text)["input_ids"] == [CLS, *reference.ids(text), SEP], text
    for a, b in PAIRS:
        encoded = tokenizer(a, b)
        ids_a, ids_b = reference.ids(a), reference.ids(b)
        assert encoded["input_ids"] == [CLS, *ids_a, SEP, *ids_b, SEP]
        assert encoded["token_type_ids"] == [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
    assert tokenizer.model_max_length == 512 and tokenizer.pad_token_id == 1


@pytest.mark.parametrize("layout", LAYOUTS)
def test_checkpoint_tokenizer_layouts_give_kobert_ids(model_file, layout, tmp_path):
    from kobert.tokenizer import get_tokenizer

    tokenizer = get_tokenizer(checkpoint_folder(tmp_path, model_file, layout))
    assert len(tokenizer) == len(Reference(model_file).piece_to_id) + 5
    assert_kobert_ids(tokenizer, Reference(model_file))
    if model_file.name != "tokenizer.model":  # KoBERT's own model: the published example
        assert tokenizer(PUBLISHED_TEXT)["input_ids"] == PUBLISHED_IDS


@pytest.mark.parametrize("saved_by_xlnet", [False, True])
def test_kobert_ordered_spiece_model_keeps_its_own_ids(model_file, saved_by_xlnet, tmp_path):
    """skt/kobert-base-v1's layout: sentencepiece's ids on that model are KoBERT's ids, specials first."""
    import sentencepiece

    from kobert.tokenizer import get_tokenizer

    (tmp_path / "hub").mkdir()
    ordered = kobert_ordered_model(model_file, tmp_path / "hub" / "spiece.model")
    sp, reference = sentencepiece.SentencePieceProcessor(model_file=str(ordered)), Reference(model_file)
    assert [sp.encode(text) for text in SENTENCES] == [reference.ids(text) for text in SENTENCES]
    folder = xlnet_save_pretrained(tmp_path / "hub", tmp_path / "saved") if saved_by_xlnet else tmp_path / "hub"
    assert_kobert_ids(get_tokenizer(folder), reference)


HF4_PYTHON = Path(__file__).resolve().parents[1] / ".venv-hf4" / "bin" / "python"


@pytest.mark.parametrize("keep_spiece", [True, False])
def test_transformers_4_xlnet_tokenizer_fast_folder(small_tokenizer_dir, keep_spiece, tmp_path):
    """transformers 4's layout: XLNetTokenizerFast.save_pretrained writes spiece.model, its own tokenizer.json
    (charsmap inside, `A <sep> <cls>`), added_tokens.json and special_tokens_map.json."""
    import subprocess

    from kobert.tokenizer import get_tokenizer

    if not HF4_PYTHON.is_file():
        pytest.skip(f"{HF4_PYTHON}: no transformers 4 venv")
    model_file = small_tokenizer_dir / "tokenizer.model"
    script = ("import sys; from transformers import XLNetTokenizerFast; "
              "XLNetTokenizerFast(vocab_file=sys.argv[1]).save_pretrained(sys.argv[2])")
    subprocess.run([str(HF4_PYTHON), "-c", script, str(model_file), str(tmp_path)], check=True, timeout=300,
                   capture_output=True, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert {"spiece.model", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    if not keep_spiece:
        (tmp_path / "spiece.model").unlink()
    assert_kobert_ids(get_tokenizer(tmp_path), Reference(model_file))


def test_tokenize_command_on_an_xlnet_saved_folder(small_tokenizer_dir, tmp_path, capsys):
    """`kobert tokenize --tokenizer DIR` (was an OverflowError traceback: XLNet's unbounded model_max_length)."""
    from kobert.cli import main

    model_file = small_tokenizer_dir / "tokenizer.model"
    folder = checkpoint_folder(tmp_path, model_file, "tokenizer.json (transformers 5 XLNetTokenizer)")
    assert main(["tokenize", "--tokenizer", str(folder), "--pair", PAIRS[0][1], PAIRS[0][0]]) == 0
    ids_a, ids_b = (Reference(model_file).ids(text) for text in PAIRS[0])
    assert json.loads(capsys.readouterr().out)["input_ids"] == [CLS, *ids_a, SEP, *ids_b, SEP]


def test_xlnet_tokenizer_without_its_vocabulary_is_one_clear_error(small_tokenizer_dir, tmp_path):
    """transformers 5's `XLNetTokenizer(vocab_file=...)` ignores the file: its tokenizer.json has one piece."""
    from transformers import XLNetTokenizer

    from kobert.tokenizer import TokenizerFileError, get_tokenizer

    XLNetTokenizer(vocab_file=str(small_tokenizer_dir / "tokenizer.model")).save_pretrained(str(tmp_path))
    if (tmp_path / "spiece.model").exists():
        pytest.skip("this transformers keeps the vocabulary (transformers 4)")
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json: .*--tokenizer") as error:
        get_tokenizer(tmp_path)
    assert "\n" not in str(error.value)


# ----------------------------------------------------------------- export and run


@pytest.fixture(scope="module")
def bare_checkpoint(tmp_path_factory):
    """A tiny KoBERT classifier: weights and config only, no tokenizer (as `kobert init` writes it)."""
    from kobert.checkpoint import init_checkpoint
    from kobert.config import preset

    return init_checkpoint(preset("tiny").with_head("sequence_classification", 2), tmp_path_factory.mktemp("ck") / "ck")


def test_transformers_saved_checkpoint_exports_and_runs_with_kobert_ids(bare_checkpoint, small_tokenizer_dir,
                                                                         tmp_path, capsys):
    """The issue's checkpoint: transformers 5's XLNetTokenizer files next to the weights (was KeyError: 'token_type_ids')."""
    import sentencepiece

    from kobert import runtimes
    from kobert.cli import main

    model_file = small_tokenizer_dir / "tokenizer.model"
    source = checkpoint_folder(tmp_path, model_file, "tokenizer.json (transformers 5 XLNetTokenizer)")
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(bare_checkpoint / name, source / name)
    assert main(["export", str(source), "--to", "onnx", "--out", str(tmp_path / "export"), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
    reference = Reference(model_file)
    with runtimes.load(tmp_path / "export", runtime="onnx") as runtime:
        encoded = runtime.encode(SENTENCES[:4])
        for row, text in zip(encoded["input_ids"], SENTENCES[:4]):
            assert row[row != 1].tolist() == [CLS, *reference.ids(text), SEP]
    # The rebuilt SentencePiece model travels with the export (tf-text's in-graph tokenizer reads it).
    rebuilt = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "export" / "tokenizer" / "tokenizer.model"))
    assert [rebuilt.encode(t) for t in SENTENCES] == [reference.sp.encode(t) for t in SENTENCES]
    assert main(["run", str(tmp_path / "export"), "--runtime", "onnx", "--output", "logits", "정말 재밌어요"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "정말 재밌어요"


def test_checkpoint_without_tokenizer_exports_with_one_warning_and_run_says_how_to_add_one(bare_checkpoint, tmp_path,
                                                                                          capsys):
    from kobert.cli import main

    assert main(["export", str(bare_checkpoint), "--to", "onnx", "--out", str(tmp_path / "export"), "--quiet"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(warnings) == 1 and warnings[0].startswith("kobert export: warning: ") and "--tokenizer" in warnings[0]
    assert main(["run", str(tmp_path / "export"), "--runtime", "onnx", "정말 재밌어요"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "this export has no tokenizer" in error and "--tokenizer" in error
