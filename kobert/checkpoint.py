"""Load any KoBERT checkpoint into the canonical weight set.

Three kinds of source are accepted:

- a Hugging Face directory: `config.json` + `model.safetensors` or `pytorch_model.bin`
  (`BertModel` or a `BertFor...` head);
- a hub id such as `skt/kobert-base-v1`, downloaded with huggingface_hub (and its cache);
- KoBERT's legacy PyTorch state dict (`pytorch_kobert_2439f391a6.params`), whose old
  pytorch-pretrained-bert names (`LayerNorm.gamma`, no `bert.` prefix) are mapped onto
  the Hugging Face names.

Nothing is unpickled: safetensors, or `torch.load(weights_only=True)`.
This module imports no framework and no spoke: `.bin`/legacy files are read by
the torch spoke's `read_torch_file` (`kobert.runtimes.torch_file`), reached by
name through the registry, like every spoke (the torch runtime reads its
checkpoints through here, never the other way round).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kobert.canonical import CanonicalWeights, CheckpointError, weight_table
from kobert.config import HEAD_SPECS, KoBertConfig

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Tensors beside "bert.": each task head's layer, and the pretraining heads ("cls.").
HEAD_PREFIXES = (*dict.fromkeys(f"{spec.layer}." for spec in HEAD_SPECS.values() if spec.layer), "cls.")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
ASSETS = Path(__file__).parent / "assets"
# Written by `kobert import` (kobert.importing) beside the weights: which framework's file they came from.
PROVENANCE_FILE = "provenance.json"
DEFAULT = "default"  # names the shipped default model wherever a checkpoint is expected
BACKBONE = "backbone"  # names the shipped pretrained encoder (no task head), e.g. `finetune --checkpoint backbone`


@dataclass
class LoadedCheckpoint:
    weights: CanonicalWeights
    source: dict = field(default_factory=dict)  # kind, location, files with sha256
    path: Path | None = None  # the local directory or file the weights were read from

    @property
    def config(self) -> KoBertConfig:
        return self.weights.config


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- reading raw tensors -----------------------------------------------------


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """A state dict from safetensors or a torch file, without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    from kobert import registry

    return registry.load_function(registry.TORCH_FILE_READER)(path)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:  # SafetensorError, header parse errors, truncation
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from None


# --- name normalisation ------------------------------------------------------


def to_hf_names(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map BertModel, BertFor... and legacy pytorch-pretrained-bert names onto `bert.`-prefixed HF names."""
    out = {}
    for name, array in state.items():
        name = name.removeprefix("module.")  # saved from DataParallel
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        if not name.startswith("bert.") and not name.startswith(HEAD_PREFIXES):
            name = "bert." + name
        out[name] = array
    return out


def infer_config(state: dict[str, np.ndarray], source: str) -> KoBertConfig:
    """A config for a legacy state dict, which ships without config.json."""
    try:
        vocab, hidden = state["bert.embeddings.word_embeddings.weight"].shape
        positions = state["bert.embeddings.position_embeddings.weight"].shape[0]
        types = state["bert.embeddings.token_type_embeddings.weight"].shape[0]
        ffn = state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"{source}: not a BERT state dict (no {e.args[0]})") from None
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", k)))
    # Head count is not recorded in the weights; BERT-family models use 64-wide heads.
    return KoBertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=max(1, hidden // 64), intermediate_size=ffn,
                        max_position_embeddings=positions, type_vocab_size=types)


# --- sources -----------------------------------------------------------------


def download_from_hub(repo_id: str) -> Path:
    """Snapshot a hub repo (config, weights, tokenizer files) into the huggingface_hub cache."""
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "*.safetensors", "pytorch_model.bin", "tokenizer*", "*.model", "*.spiece",
                "special_tokens_map.json", "vocab.txt"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{repo_id}: could not fetch from the Hugging Face hub (offline, or no such repo?): {reason}") from None


def shipped(name: str) -> Path:
    """A file or folder shipped inside the package (kobert/assets/NAME)."""
    return ASSETS / name


def default_checkpoint() -> Path:
    """The shipped default model: a small KoBERT fine-tuned on NSMC (see its CARD.md)."""
    model = shipped("model")
    if not (model / "config.json").is_file():
        raise CheckpointError(f"{model}: no shipped default model in this version of kobert")
    return model


def backbone_checkpoint() -> Path:
    """The shipped backbone: the Korean encoder pretrained here, before any task (see its CARD.md)."""
    backbone = shipped("backbone")
    if not (backbone / "config.json").is_file():
        raise CheckpointError(f"{backbone}: no shipped backbone in this version of kobert")
    return backbone


def resolve(src: str | Path) -> tuple[Path, str]:
    """(local path, kind) for a checkpoint reference: 'default', 'backbone', 'hf_dir', 'legacy' or 'hub'."""
    if str(src) == DEFAULT:
        return default_checkpoint(), "default"
    if str(src) == BACKBONE and not Path(src).exists():
        return backbone_checkpoint(), "backbone"
    path = Path(src)
    if path.is_dir():
        return path, "hf_dir"
    if path.is_file():
        return path, "legacy"
    if isinstance(src, str) and HUB_ID.match(src) and not src.startswith((".", "/")):
        return download_from_hub(src), "hub"
    raise CheckpointError(f"{src}: no such file or directory, and not a hub id (owner/name)")


def load_checkpoint(src: str | Path) -> LoadedCheckpoint:
    """Any supported checkpoint -> validated canonical weights and a record of where they came from."""
    path, kind = resolve(src)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{path}: no config.json (not a Hugging Face checkpoint directory)")
        weight_file = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if weight_file is None:
            raise CheckpointError(f"{path}: no weights ({' or '.join(WEIGHT_FILES)})")
        try:
            config = KoBertConfig.from_file(config_file)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
        state = to_hf_names(read_tensors(weight_file))
        files = [config_file, weight_file]
    else:
        state = to_hf_names(read_tensors(path))
        config = infer_config(state, str(path))
        weight_file, files = path, [path]
    weights = CanonicalWeights.from_hf_state_dict(config, state, source=str(weight_file))
    source = {"kind": kind, "location": str(src), "pad_token_id": config.pad_token_id,
              "sha256": {f.name: sha256_file(f) for f in files}}
    if path.is_dir() and (path / PROVENANCE_FILE).is_file():  # into the export manifest's "source"
        source["provenance"] = read_provenance(path / PROVENANCE_FILE)
    return LoadedCheckpoint(weights, source, path)


def read_provenance(path: Path) -> dict:
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(provenance, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return provenance


def init_checkpoint(config: KoBertConfig, out: str | Path, seed: int = 0) -> Path:
    """Write a deterministic random-init Hugging Face checkpoint (safetensors) for tests and benchmarks.

    LayerNorm scales/shifts and biases are drawn at random too (transformers
    initialises them to 1 and 0), so a transposed or skipped tensor in an
    exporter cannot hide behind a neutral value.
    """
    rng = np.random.default_rng(seed)
    state = {}
    for canonical, hf, shape, transpose in weight_table(config):
        base = 1.0 if canonical.endswith(".gamma") else 0.0
        array = base + (0.1 if canonical.endswith(".gamma") else 0.02) * rng.standard_normal(shape)
        state[hf] = np.ascontiguousarray((array.T if transpose else array).astype(np.float32))
    weights = CanonicalWeights.from_hf_state_dict(config, state, source=f"init(seed={seed})")
    save_hf_checkpoint(weights, out)
    return Path(out)


# `kobert init` leaves this file beside the checkpoint, so a later `kobert init --force` knows the
# folder for its own output (and nothing else).
INIT_MARKER = ".kobert-init"
INIT_FILES = {INIT_MARKER, "config.json", "model.safetensors"}


def init_checkpoint_folder(config: KoBertConfig, out: str | Path, seed: int = 0, force: bool = False) -> Path:
    """`kobert init`: `init_checkpoint` into `out`, which must be new, empty, or (with `force`) an earlier
    `kobert init` output. Written whole beside `out` and swapped in: a refused or failed write leaves
    `out` as it was."""
    from kobert.staging import move_into_place, staging_folder

    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ValueError(f"{out}: exists and is not empty (--force replaces an earlier `kobert init` output)")
        found = {p.name for p in out.iterdir()}
        if INIT_MARKER not in found or not found <= INIT_FILES:
            extra = sorted(found - INIT_FILES)
            what = f"it holds {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}" if extra else f"no {INIT_MARKER}"
            raise ValueError(f"{out}: not an earlier `kobert init` output ({what}); --force replaces only that, "
                             "so it was left untouched")
    with staging_folder(out, ValueError, "the checkpoint") as staging:
        init_checkpoint(config, staging, seed=seed)
        (staging / INIT_MARKER).write_text(f"kobert init, seed {seed}\n", encoding="utf-8")
        move_into_place(staging, out)
    return out


def save_hf_checkpoint(weights: CanonicalWeights, out: str | Path) -> Path:
    """config.json + model.safetensors, loadable with plain transformers `AutoModel...from_pretrained`."""
    from safetensors.numpy import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = weights.to_hf_state_dict()
    if weights.config.head == "none":
        state = {k.removeprefix("bert."): v for k, v in state.items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(weights.config.to_json(), encoding="utf-8")
    return out


def summarize(loaded: LoadedCheckpoint) -> dict:
    """What `kobert inspect` prints."""
    config = loaded.config
    return {
        "source": loaded.source,
        "head": config.head,
        "num_labels": config.num_labels,
        "parameters": loaded.weights.num_parameters,
        "pad_token_id": config.pad_token_id,
        "config": config.to_hf_dict(),
        "fingerprint": loaded.weights.fingerprint(),
    }
