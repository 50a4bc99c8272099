"""Training pipeline: shards, masking, data-parallel equivalence, resume after kill -9, NSMC fine-tuning.

Everything runs on CPU with the tiny preset and a tokenizer trained on generated text,
so no shared data is needed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from kobert.training.corpus import build_shards, clean_document, load_shards, regex_split  # noqa: E402
from kobert.training.pretrain import IGNORE_INDEX, PackedSequences, mask_tokens  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# fp32: the equality tests below compare runs bit for bit (bf16 autocast is the default on bf16 CPUs)
TINY_RUN = ["--preset", "tiny", "--batch-size", "8", "--seq-len", "32", "--quiet", "--precision", "fp32"]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory, generated_corpus, small_tokenizer_dir) -> Path:
    out = tmp_path_factory.mktemp("shards")
    build_shards([generated_corpus], out, tokenizer=small_tokenizer_dir, splitter="regex", workers=1,
                 max_documents=1500, progress=False)
    return out


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    return env


def _pretrain_cmd(shards: Path, out: Path, *extra: str, nproc: int = 1) -> list[str]:
    args = ["pretrain", "--shards", str(shards), "--out", str(out), *TINY_RUN, *extra]
    if nproc == 1:
        return [sys.executable, "-m", "kobert.training.cli", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "kobert.training.cli", *args]


def _run(cmd: list[str], timeout: int = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- corpus and shards ------------------------------------------------------------------


def test_clean_document_and_regex_split():
    assert clean_document("  한국어\t문장.\u00a0 둘째  문장! \n") == "한국어 문장. 둘째 문장!"
    assert clean_document("\u1112\u1161\u11ab") == "한"  # NFC composes conjoining jamo
    assert regex_split("첫 문장이다. 둘째 문장? 셋째") == ["첫 문장이다.", "둘째 문장?", "셋째"]


def test_shards_roundtrip_decodes_to_the_documents(shard_dir, generated_corpus, small_tokenizer_dir):
    from kobert.tokenizer import get_tokenizer
    from kobert.training.corpus import iter_documents

    shards = load_shards(shard_dir)
    tok = get_tokenizer(small_tokenizer_dir)
    sep = shards.special_id("[SEP]")
    stream = np.asarray(shards.streams[0])
    assert stream.dtype == np.uint16 and shards.meta["tokens"] == len(stream)
    assert shards.meta["vocab_size"] == len(tok)
    ends = np.flatnonzero(stream == sep)
    assert len(ends) == shards.meta["documents"] == 1500
    docs = list(iter_documents(generated_corpus))[:1500]
    start = 0
    for doc, end in list(zip(docs, ends))[:200]:
        expected = [i for s in regex_split(doc) for i in tok(s, add_special_tokens=False)["input_ids"]]
        assert stream[start:end].tolist() == expected, doc
        assert tok.decode(stream[start:end].tolist()).replace(" ", "") == tok.decode(expected).replace(" ", "")
        start = end + 1
    starts = np.asarray(shards.starts[0])
    assert len(starts) == shards.meta["sentences"] and np.all(np.diff(starts.astype(np.int64)) > 0)
    # every document begins with a sentence start
    assert set(np.concatenate([[0], ends[:-1] + 1]).tolist()) <= set(starts.tolist())


def test_shards_are_identical_with_worker_processes(shard_dir, generated_corpus, small_tokenizer_dir, tmp_path):
    meta = build_shards([generated_corpus], tmp_path, tokenizer=small_tokenizer_dir, splitter="regex", workers=2,
                        max_documents=1500, progress=False)
    assert meta["tokenizer_sha256"] == json.loads((shard_dir / "meta.json").read_text())["tokenizer_sha256"]
    assert (tmp_path / "shard_00000.bin").read_bytes() == (shard_dir / "shard_00000.bin").read_bytes()


def test_missing_corpus_names_the_file(tmp_path, small_tokenizer_dir):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        build_shards([tmp_path / "nope.txt"], tmp_path / "out", tokenizer=small_tokenizer_dir, workers=1)


# --- sequences and masking ------------------------------------------------------------------


def test_packed_sequences_are_cls_text_sep_then_padding(shard_dir):
    shards = load_shards(shard_dir)
    data = PackedSequences(shards, 32)
    rows = data.batch(np.random.default_rng(0), 64)
    assert rows.shape == (64, 32)
    assert np.all(rows[:, 0] == data.cls)
    for row in rows:
        body = row[row != data.pad]
        assert body[-1] == data.sep and data.cls not in body[1:]
        assert np.all(row[len(body):] == data.pad)  # padding only at the end


@pytest.mark.parametrize("mask_prob", [0.15, 0.3])
def test_masking_rate_and_specials(mask_prob):
    rng = np.random.default_rng(1)
    cls, sep, pad, mask = 2, 3, 1, 4
    ids = rng.integers(5, 600, size=(256, 128))
    ids[:, 0] = cls
    ids[:, 60] = sep
    ids[:, -1] = sep
    ids[:, 100:-1] = pad
    inputs, labels = mask_tokens(ids, rng, mask_prob, mask, (cls, sep, pad), (5, 600))
    chosen = labels != IGNORE_INDEX
    maskable = ~np.isin(ids, (cls, sep, pad))
    assert not chosen[~maskable].any(), "a [CLS]/[SEP]/[PAD] position was selected"
    assert np.array_equal(inputs[~maskable], ids[~maskable])
    assert abs(chosen.sum() / maskable.sum() - mask_prob) < 0.01
    assert np.array_equal(labels[chosen], ids[chosen])
    as_mask = (inputs == mask)[chosen].mean()
    unchanged = (inputs == ids)[chosen].mean()
    assert abs(as_mask - 0.8) < 0.02 and 0.08 < unchanged < 0.12  # (+ random hits of the same id)
    assert inputs[chosen & (inputs != mask)].min() >= 5
    assert not (inputs[~chosen] == mask).any()


# --- distributed and resume ---------------------------------------------------------------------


def test_two_processes_match_one_process(shard_dir, tmp_path):
    """torchrun with 2 gloo ranks on the same global batch: same losses and same weights after 2 steps."""
    common = ("--steps", "2", "--log-every", "1", "--checkpoint-every", "100", "--dropout", "0", "--warmup-steps", "1")
    _run(_pretrain_cmd(shard_dir, tmp_path / "one", *common))
    _run(_pretrain_cmd(shard_dir, tmp_path / "two", *common, nproc=2), timeout=240)
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == ["1", "2"]
    for a, b in zip(one, two):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-6, abs=1e-6)
    w1, w2 = _weights(tmp_path / "one" / "model"), _weights(tmp_path / "two" / "model")
    assert w1.keys() == w2.keys()
    for name in w1:
        np.testing.assert_allclose(w1[name], w2[name], atol=1e-6, rtol=0, err_msg=name)
    # and training did move the weights (the comparison is not between two untouched inits)
    from kobert.training.pretrain import PretrainConfig, build_model

    cfg = PretrainConfig(shards=str(shard_dir), out="unused", preset="tiny", seq_len=32)
    torch.manual_seed(0)
    init = build_model(cfg.model_config(len(w1["bert.embeddings.word_embeddings.weight"])), 0.0).state_dict()
    moved = w1["bert.encoder.layer.0.attention.self.query.weight"] - init["bert.encoder.layer.0.attention.self.query.weight"].numpy()
    assert np.abs(moved).max() > 1e-5


def test_resume_after_kill_matches_uninterrupted_run(shard_dir, tmp_path):
    every, steps = 20, 300
    args = ("--steps", str(steps), "--checkpoint-every", str(every), "--log-every", "10")
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_pretrain_cmd(shard_dir, killed, *args), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latest = killed / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"run ended before the kill:\n{proc.stderr.read()[-2000:]}"
    assert not (killed / "model").exists(), "the killed run had already finished; make it longer"
    saved = int(latest.read_text().removeprefix("step_"))
    logged = max(int(r["step"]) for r in _log(killed))
    assert saved % every == 0 and 0 < saved < steps
    assert logged - saved <= every  # lost at most one checkpoint interval

    resumed = _run(_pretrain_cmd(shard_dir, killed, *args, "--resume"))
    assert f"resumed from {killed / 'checkpoints' / f'step_{saved:07d}'} at step {saved}" in resumed.stdout
    _run(_pretrain_cmd(shard_dir, tmp_path / "straight", *args))

    a, b = _weights(killed / "model"), _weights(tmp_path / "straight" / "model")
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-6, rtol=0, err_msg=name)
    steps_logged = [int(r["step"]) for r in _log(killed)]
    assert steps_logged == list(range(10, steps + 1, 10))  # no gap, no duplicate rows
    straight = _log(tmp_path / "straight")
    assert [r["loss"] for r in _log(killed)] == [r["loss"] for r in straight]
    assert (killed / "loss.png").is_file()


def test_exported_pretrained_model_loads_as_kobert_checkpoint(shard_dir, tmp_path):
    from kobert.checkpoint import load_checkpoint
    from kobert.tokenizer import get_tokenizer

    _run(_pretrain_cmd(shard_dir, tmp_path, "--steps", "3", "--checkpoint-every", "2", "--log-every", "1"))
    loaded = load_checkpoint(tmp_path / "model")
    assert loaded.config.head == "none" and loaded.config.num_hidden_layers == 2
    assert len(get_tokenizer(tmp_path / "model")) == loaded.config.vocab_size
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_0000002", "step_0000003"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["tokens"] == 3 * 8 * 32


# --- the backbone recipe: warmup-stable-decay, ELECTRA, publish and continue ----------------------


def test_wsd_schedule_is_keyed_to_tokens():
    from kobert.training.pretrain import PretrainConfig, learning_rate

    cfg = PretrainConfig(shards="s", out="o", batch_size=4, seq_len=10, lr=1e-3, schedule="wsd",
                         warmup_tokens=400, decay_tokens=1000, max_tokens=4000)
    assert cfg.steps == 100  # max_tokens / (batch x seq_len)
    assert learning_rate(cfg, 0, 0) == pytest.approx(1e-4)  # warm-up: tokens after this step / warmup
    assert learning_rate(cfg, 5, 360) == pytest.approx(1e-3)
    assert learning_rate(cfg, 50, 2000) == pytest.approx(1e-3)  # stable
    assert learning_rate(cfg, 80, 3500) == pytest.approx(0.5e-3)  # halfway through the decay
    # a continued backbone re-warms from where its fresh optimizer started
    assert learning_rate(cfg, 50, 2000, warmup_from=2000) == pytest.approx(1e-4)


def test_electra_run_publishes_a_bert_backbone_that_continues(shard_dir, tmp_path):
    """ELECTRA pretraining -> decay branch -> `kobert backbone publish` -> `--init-from` on a fresh run."""
    import transformers

    electra = ("--objective", "electra", "--schedule", "wsd", "--warmup-tokens", "512", "--log-every", "2",
               "--checkpoint-every", "100")
    run, release, backbone = tmp_path / "run", tmp_path / "release", tmp_path / "backbone"
    _run(_pretrain_cmd(shard_dir, run, *electra, "--max-tokens", str(6 * 8 * 32)))
    _run(_pretrain_cmd(shard_dir, release, *electra, "--branch-from", str(run), "--max-tokens", str(10 * 8 * 32),
                       "--decay-tokens", str(4 * 8 * 32)))
    assert (run / "checkpoints" / "latest").read_text() == "step_0000006"  # the branch left the run alone
    lrs = [float(r["lr"]) for r in _log(release)]
    assert lrs[-1] < lrs[-2] < max(lrs)  # decaying at the end
    assert [int(r["step"]) for r in _log(release)] == [2, 4, 6, 8, 10]

    _run([sys.executable, "-m", "kobert.training.cli", "backbone", "publish", str(release), "--out", str(backbone)])
    state = json.loads((backbone / "state.json").read_text())
    assert state["step"] == 10 and state["tokens"] == 10 * 8 * 32 and state["recipe"]["objective"] == "electra"
    model = transformers.AutoModel.from_pretrained(backbone)  # plain transformers, no kobert
    assert type(model).__name__ == "BertModel"
    from kobert.checkpoint import load_checkpoint

    assert load_checkpoint(backbone).config.num_hidden_layers == 2

    cont = _run(_pretrain_cmd(shard_dir, tmp_path / "next", *electra, "--init-from", str(backbone),
                              "--max-tokens", str(12 * 8 * 32)))
    assert "continuing" in cont.stdout and "from step 10" in cont.stdout
    assert [int(r["step"]) for r in _log(tmp_path / "next")] == [12]


def test_continuation_with_another_batch_size_stops_at_max_tokens_fully_decayed(shard_dir, tmp_path):
    """--init-from at a smaller batch: the run is keyed to tokens, so it ends at --max-tokens with the
    decay complete (not at a step count computed for the old batch size, nor with steps at LR 0)."""
    mlm = ("--schedule", "wsd", "--warmup-tokens", "256", "--log-every", "1", "--checkpoint-every", "100")
    _run(_pretrain_cmd(shard_dir, tmp_path / "run", *mlm, "--max-tokens", str(4 * 8 * 32)))
    _run([sys.executable, "-m", "kobert.training.cli", "backbone", "publish", str(tmp_path / "run"),
          "--out", str(tmp_path / "backbone")])
    _run(_pretrain_cmd(shard_dir, tmp_path / "next", *mlm, "--batch-size", "4",  # the last --batch-size wins
                       "--init-from", str(tmp_path / "backbone"), "--max-tokens", str(8 * 8 * 32), "--decay-tokens", "512"))
    rows = _log(tmp_path / "next")
    assert [int(r["tokens"]) for r in rows] == list(range(4 * 8 * 32 + 128, 8 * 8 * 32 + 1, 128))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[-1] < 0.3 * max(lrs) and min(lrs) > 0  # decayed to the end, never a step at LR 0


# --- NSMC fine-tuning ------------------------------------------------------------------------------


def _write_nsmc(directory: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    good, bad = ["최고의 영화", "정말 재밌다", "감동 좋아요", "강추"], ["최악", "지루하다 별로", "돈 아깝다", "노잼 \"진짜\""]
    directory.mkdir(parents=True, exist_ok=True)
    for name, n in (("ratings_train.txt", n_train), ("ratings_test.txt", n_test)):
        with open(directory / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["id", "document", "label"])
            for i in range(n):
                label = int(rng.integers(2))
                writer.writerow([1000 + i, " ".join(rng.choice(good if label else bad, size=3)), label])
    return directory


def test_read_nsmc_handles_quotes_and_empty_documents(tmp_path):
    from kobert.training.finetune import read_nsmc

    path = tmp_path / "ratings_test.txt"
    path.write_text('id\tdocument\tlabel\n1\t"따옴표 ""안"" 문장"\t1\n2\t\t0\n3\t보통\t0\n', encoding="utf-8")
    data = read_nsmc(path)
    assert data.texts == ['따옴표 "안" 문장', "", "보통"] and data.labels == [1, 0, 0]
    assert len(read_nsmc(path, limit=2)) == 2


def test_finetune_nsmc_writes_eval_and_a_loadable_classifier(tmp_path, small_tokenizer_dir):
    from kobert.checkpoint import init_checkpoint, load_checkpoint
    from kobert.config import preset
    from kobert.tokenizer import get_tokenizer
    from kobert.training.finetune import finetune_nsmc

    tok = get_tokenizer(small_tokenizer_dir)
    base = init_checkpoint(dataclasses.replace(preset("tiny"), vocab_size=len(tok)), tmp_path / "base")
    tok.save_pretrained(str(base))
    nsmc = _write_nsmc(tmp_path / "nsmc", 300, 120)
    result = finetune_nsmc(base, tmp_path / "ft", nsmc_dir=nsmc, epochs=3, max_length=16, batch_size=16, lr=3e-3,
                           progress=False)
    saved = json.loads((tmp_path / "ft" / "eval.json").read_text())
    assert saved["accuracy"] == result["accuracy"] and saved["test_examples"] == 120
    assert result["accuracy"] > 0.8, "the synthetic task is separable by its words"
    loaded = load_checkpoint(tmp_path / "ft")
    assert loaded.config.head == "sequence_classification" and loaded.config.num_labels == 2
    assert loaded.config.id2label == {0: "negative", 1: "positive"}
    assert (tmp_path / "ft" / "tokenizer.json").is_file()


def test_finetune_without_nsmc_is_a_clear_error(tmp_path, monkeypatch):
    from kobert import datasets

    with pytest.raises(FileNotFoundError, match="ratings_train.txt"):
        datasets.locate_nsmc(tmp_path)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    monkeypatch.setattr(datasets, "DOWNLOAD_CACHE", tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="raw.githubusercontent.com/e9t/nsmc.*--nsmc-dir"):
        datasets.download_nsmc(tmp_path / "cache")


def test_cli_registers_training_commands():
    from kobert.cli import build_parser

    args = build_parser().parse_args(["finetune", "nsmc", "--checkpoint", "c", "--out", "o", "--epochs", "1"])
    assert args.func.__name__ == "cmd_finetune_nsmc" and args.epochs == 1
    args = build_parser().parse_args(["pretrain", "--shards", "s", "--out", "o", "--resume"])
    assert args.resume and args.func.__name__ == "cmd_pretrain"


def test_length_grouped_batches_keep_every_example_once_and_pad_less():
    import random

    from kobert.training.finetune import Feature, length_grouped

    rng = np.random.default_rng(0)
    features = [Feature(list(range(int(n))), [0] * int(n), 0) for n in rng.integers(3, 64, size=1000)]
    order = list(range(len(features)))
    random.Random(0).shuffle(order)
    grouped = length_grouped(order, features, 32, random.Random(0))
    assert sorted(grouped) == list(range(len(features)))  # a permutation: nothing lost, nothing twice

    def padded(o):
        return sum(max(len(features[j].ids) for j in o[i:i + 32]) * len(o[i:i + 32]) for i in range(0, len(o), 32))

    assert padded(grouped) < 0.7 * padded(order)
    spreads = [np.ptp([len(features[j].ids) for j in grouped[i:i + 32]]) for i in range(0, 1000 - 32, 32)]
    assert np.mean(spreads) < 5  # every full slice of 32 is one sorted group, not two halves
    assert length_grouped(order, features, 32, random.Random(0)) == grouped


def test_publish_keeps_the_shipped_tokenizer_of_the_same_vocabulary(tmp_path):
    """A run's tokenizer.json (an older Metaspace split=False serialisation) does not replace the one the
    backbone ships when the pieces are the same; a different vocabulary does."""
    from kobert.training.backbone import _keep_published_tokenizer

    shipped = json.loads((REPO_ROOT / "kobert/assets/tokenizer/tokenizer.json").read_text(encoding="utf-8"))
    trained = json.loads(json.dumps(shipped))
    trained["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}
    for name, data in (("dest", shipped), ("staging", trained)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    _keep_published_tokenizer(tmp_path / "dest", tmp_path / "staging")
    assert json.loads((tmp_path / "staging/tokenizer.json").read_text(encoding="utf-8")) == shipped

    trained["model"]["vocab"][5][0] = "▁다른"  # another vocabulary: the run's file is the one to publish
    (tmp_path / "staging/tokenizer.json").write_text(json.dumps(trained), encoding="utf-8")
    _keep_published_tokenizer(tmp_path / "dest", tmp_path / "staging")
    assert json.loads((tmp_path / "staging/tokenizer.json").read_text(encoding="utf-8")) == trained


def test_grown_backbone_stacks_the_trained_layers_and_loads_plainly(tmp_path, capsys):
    """`kobert backbone grow`: new layer i starts as trained layer i mod n, the rest is the source's, and
    plain transformers loads the deeper encoder; a shallower target or an existing folder is one line."""
    import transformers

    from kobert.cli import main

    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path / "src")
    (tmp_path / "src/state.json").write_text(json.dumps({"step": 7, "tokens": 896, "recipe": {"objective": "mlm"}}))

    assert main(["backbone", "grow", str(tmp_path / "src"), "--layers", "5", "--out", str(tmp_path / "grown")]) == 0
    src, grown = _weights(tmp_path / "src"), _weights(tmp_path / "grown")
    for new in range(5):
        for key in [k for k in src if k.startswith("bert.encoder.layer.0.")]:
            rest = key.split(".", 4)[4]
            np.testing.assert_array_equal(grown[f"bert.encoder.layer.{new}.{rest}"], src[f"bert.encoder.layer.{new % 2}.{rest}"])
    np.testing.assert_array_equal(grown["bert.embeddings.word_embeddings.weight"], src["bert.embeddings.word_embeddings.weight"])
    model = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "grown")
    assert model.config.num_hidden_layers == 5 and len(model.bert.encoder.layer) == 5
    state = json.loads((tmp_path / "grown/state.json").read_text())
    assert state["step"] == 7 and state["grown"]["layers"] == [2, 5]

    capsys.readouterr()
    assert main(["backbone", "grow", str(tmp_path / "src"), "--layers", "2", "--out", str(tmp_path / "other")]) != 0
    assert "already has 2 layers" in capsys.readouterr().err and not (tmp_path / "other").exists()
    assert main(["backbone", "grow", str(tmp_path / "src"), "--layers", "4", "--out", str(tmp_path / "grown")]) != 0
    assert "already exists" in capsys.readouterr().err
