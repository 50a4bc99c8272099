"""`--runtime auto` picks the fastest artifact that passed its gate (a probe, cached) and says why; a named
runtime whose default artifact is missing runs the one the export has and says so."""

import json
from pathlib import Path

import numpy as np
import pytest

from kobert import runtimes
from kobert.checkpoint import init_checkpoint
from kobert.cli import main as kobert_main
from kobert.config import preset
from kobert.export import export
from kobert.runtimes import auto

pytest.importorskip("onnxruntime")
SHIPPED_TOKENIZER = Path(__file__).resolve().parents[1] / "kobert" / "assets" / "tokenizer"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("auto")
    checkpoint = init_checkpoint(preset("tiny").with_head("sequence_classification", 2), root / "ck", seed=5)
    return export(checkpoint, root / "export", targets=["onnx", "onnx-optimized"], tokenizer=SHIPPED_TOKENIZER).out


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    from kobert import progress

    monkeypatch.setitem(progress._state, "quiet", False)  # an earlier `kobert --quiet` in this process leaves it on
    monkeypatch.setenv("KOBERT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / auto.CACHE_FILE


def test_auto_opens_the_fastest_probed_artifact_and_caches_the_probe(exported, cache, capsys, monkeypatch):
    with runtimes.load(exported, runtime="auto") as chosen:
        ids = np.random.default_rng(0).integers(5, 8002, size=(2, 9))
        got = chosen.run(ids)
    reason = capsys.readouterr().err
    (probes,) = json.loads(cache.read_text()).values()
    timings = probes["timings_s"]
    assert sorted(timings) == ["onnx", "onnx-optimized"] and chosen.artifact == min(timings, key=timings.get)
    assert f"--runtime auto chose {chosen.artifact} (runtime onnx)" in reason and "probed" in reason
    with runtimes.load(exported, runtime="onnx", artifact=chosen.artifact) as named:
        np.testing.assert_array_equal(named.run(ids)["logits"], got["logits"])

    def no_probe(*args):
        raise AssertionError("probed again although cached")

    monkeypatch.setattr(auto, "probe", no_probe)
    with runtimes.load(exported, runtime="auto") as again:
        assert again.artifact == chosen.artifact
    assert "cached in" in capsys.readouterr().err


def test_a_candidate_that_fails_to_open_is_left_out_and_named(exported, cache, capsys, monkeypatch):
    real_probe = auto.probe

    def broken_optimized(export_dir, artifact, shape, verify):
        if artifact == "onnx-optimized":
            raise ImportError("No module named 'onnxruntime.transformers'")
        return real_probe(export_dir, artifact, shape, verify)

    monkeypatch.setattr(auto, "probe", broken_optimized)
    with runtimes.load(exported, runtime="auto") as chosen:
        assert chosen.artifact == "onnx"
    assert "left out onnx-optimized" in capsys.readouterr().err


def test_the_cli_runs_auto_and_an_unreadable_cache_is_probed_again(exported, cache, capsys):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert kobert_main(["run", str(exported), "--runtime", "auto", "--output", "logits", "좋아요"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)["logits"]) == 2 and "--runtime auto chose" in err
    assert len(json.loads(cache.read_text())) == 1


def test_a_runtime_without_its_default_artifact_runs_the_one_here(exported, tmp_path, capsys):
    import shutil

    only_optimized = shutil.copytree(exported, tmp_path / "only-optimized")
    manifest = json.loads((only_optimized / "manifest.json").read_text())
    del manifest["artifacts"]["onnx"]
    shutil.rmtree(only_optimized / "onnx")
    (only_optimized / "manifest.json").write_text(json.dumps(manifest))
    with runtimes.load(only_optimized, runtime="onnx") as runtime:
        assert runtime.artifact == "onnx-optimized"
    assert "has no 'onnx' artifact; runtime onnx runs 'onnx-optimized'" in capsys.readouterr().err


def test_kobert_eval_runs_torch_and_the_one_runtime_asked_for(exported, tmp_path, capsys):
    nsmc = tmp_path / "nsmc"
    nsmc.mkdir()
    reviews = ["이 영화 정말 재밌어요", "스토리가 너무 지루하다", "배우들 연기가 최고", "돈이 아깝다"]
    for split in ("train", "test"):  # the NSMC folder holds both
        (nsmc / f"ratings_{split}.txt").write_text("id\tdocument\tlabel\n" + "".join(
            f"{i}\t{text}\t{i % 2}\n" for i, text in enumerate(reviews)), encoding="utf-8")
    kobert_main(["eval", "nsmc", str(exported), "--nsmc-dir", str(nsmc), "--runtime", "auto"])
    captured = capsys.readouterr()
    rows = [line.split("|")[1].strip() for line in captured.out.splitlines() if line.startswith("| ") and "---" not in line]
    chosen = captured.err.split("--runtime auto chose ")[1].split()[0]
    assert rows[1:] == ["torch", chosen] and chosen in ("onnx", "onnx-optimized")
    kobert_main(["eval", "nsmc", str(exported), "--nsmc-dir", str(nsmc), "--artifact", "onnx-optimized"])
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["torch", "onnx-optimized"]
