"""The registry: every artifact and runtime kobert knows, each described once.

A `Target` row says what an artifact is called (its `--to` value and manifest
key), which exporter builds it, which runtime opens it, which pip extra that
needs, which parity gate judges it and which other artifact it is built from.
The CLI's choices, the export's build order, parity, `kobert eval`, `kobert
bench` and the parity tests all read these two tables; nothing else lists
artifacts.

`PackageSpec` rows are the deployable packages built from an export (an MMS
archive, a static web page): `kobert package <name>` reads them.

To add a framework: write `kobert/exporters/<name>.py` (a module or object with
`export(weights, export_dir) -> ExportedArtifact`), `kobert/runtimes/<name>.py`
(a `Runtime` subclass), then add one `RuntimeSpec` and one `Target` below.
Framework-free: nothing here imports a spoke until it is used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from dataclasses import dataclass


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime: `load(..., runtime=name)` opens an artifact with `implementation`."""

    name: str
    implementation: str  # "module:Class", a kobert.runtimes.base.Runtime subclass
    extra: str  # the pip extra that installs its framework: pip install 'kobert[extra]'
    # "module:function" silencing its framework's start-up logging (importable without the framework)
    quiet: str = ""

    def runtime_class(self):
        module, _, cls = self.implementation.partition(":")
        return getattr(importlib.import_module(module), cls)


@dataclass(frozen=True)
class Target:
    """An artifact kobert can build."""

    name: str
    exporter: str  # "module" or "module:object": something with `export(weights, export_dir)`
    runtime: str  # a RUNTIMES key
    gate: str = "fp32"  # a kobert.parity.GATES key; read from here, never from a manifest
    built_from: str | None = None  # an artifact whose files this one reads (built first, dropped if not asked)
    default: bool = False  # built by a plain `kobert export`
    bench_label: str | None = None  # its row in `kobert bench`; None: not benchmarked
    summary: str = ""  # one line for --help and the README
    # its exporter takes a third argument, a `kobert.calibration.Calibration` (static int8 tiers)
    calibrated: bool = False

    @property
    def extra(self) -> str:
        return RUNTIMES[self.runtime].extra

    def load_exporter(self):
        module, _, attribute = self.exporter.partition(":")
        found = importlib.import_module(module)
        return getattr(found, attribute) if attribute else found


@dataclass(frozen=True)
class PackageSpec:
    """A deployable package built from an existing export: `kobert package <name> DIR --out OUT`."""

    name: str
    builder: str  # "module:function", called as function(export_dir: Path, out: Path, **options) -> Path
    needs: str  # the manifest artifact it packages
    summary: str = ""
    # extra CLI options: (flag, type, default, help); passed to the builder by their dest name
    options: tuple[tuple[str, type, object, str], ...] = ()
    # "module:function", function(package: Path) -> Path: a file the builder writes beside the package
    # (MMS's .properties), named in `kobert package`'s output so users find it.
    companion: str = ""

    def load_builder(self):
        return load_function(self.builder)

    def companion_of(self, package: Path) -> Path | None:
        return load_function(self.companion)(package) if self.companion else None


def load_function(reference: str):
    """The object a "module:name" reference names (imports its module, and so its framework)."""
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)


# Pickled torch checkpoints (`.bin`, legacy files): read by the torch spoke; `kobert.checkpoint` calls it by name.
TORCH_FILE_READER = "kobert.runtimes.torch_file:read_torch_file"

RUNTIMES: dict[str, RuntimeSpec] = {}
TARGETS: dict[str, Target] = {}
PACKAGES: dict[str, PackageSpec] = {}
# The torch runtime opens the manifest's "reference" checkpoint: the judge, not an artifact.
REFERENCE = "reference"


def register_runtime(spec: RuntimeSpec) -> RuntimeSpec:
    RUNTIMES[spec.name] = spec
    return spec


def register_target(target: Target) -> Target:
    """Add (or replace) a target; its runtime must be registered and what it is built from known."""
    if target.runtime not in RUNTIMES:
        raise ValueError(f"target {target.name!r}: unknown runtime {target.runtime!r}")
    if target.built_from is not None and target.built_from not in TARGETS:
        raise ValueError(f"target {target.name!r}: built from unknown target {target.built_from!r}")
    TARGETS[target.name] = target
    return target


def register_package(spec: PackageSpec) -> PackageSpec:
    PACKAGES[spec.name] = spec
    return spec


def unregister_target(name: str) -> None:
    TARGETS.pop(name, None)


def target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown export target {name!r}; expected one of {', '.join(TARGETS)}") from None


def runtime_spec(name: str) -> RuntimeSpec:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; expected one of {', '.join(RUNTIMES)}") from None


def default_targets() -> list[str]:
    return [t.name for t in TARGETS.values() if t.default]


def build_order(names: list[str]) -> list[str]:
    """The targets to build, each after what it is built from, in registry order."""
    needed: set[str] = set()
    for name in names:
        while name is not None and name not in needed:
            needed.add(name)
            name = target(name).built_from
    return [name for name in TARGETS if name in needed]


def quiet_runtimes() -> None:
    """Run each runtime's `quiet` hook once, before any framework is imported (the CLI, unless --verbose)."""
    for hook in dict.fromkeys(spec.quiet for spec in RUNTIMES.values() if spec.quiet):
        module, _, function = hook.partition(":")
        getattr(importlib.import_module(module), function)()


def runtimes_for(artifact: str) -> list[str]:
    """Runtimes that can open an artifact: the torch reference, or its target's runtime."""
    return ["torch"] if artifact == REFERENCE else [target(artifact).runtime]


# --- the rows ------------------------------------------------------------------------------

TF_QUIET = "kobert.runtimes.tf_logging:quiet"  # TensorFlow's and absl's start-up logging

for _spec in (
    RuntimeSpec("torch", "kobert.runtimes.torch:TorchRuntime", "torch"),
    RuntimeSpec("onnx", "kobert.runtimes.onnx:OnnxRuntime", "onnx"),
    RuntimeSpec("tf", "kobert.runtimes.tensorflow:TensorFlowRuntime", "tf", quiet=TF_QUIET),
    RuntimeSpec("mxnet", "kobert.runtimes.mxnet:MXNetRuntime", "mxnet"),
    RuntimeSpec("tflite", "kobert.runtimes.tflite:TFLiteRuntime", "tflite", quiet=TF_QUIET),
):
    register_runtime(_spec)

for _target in (
    Target("onnx", "kobert.exporters.onnx", "onnx", default=True, bench_label="onnxruntime fp32",
           summary="torch.onnx (dynamo), opset 18, dynamic batch and length"),
    Target("tf", "kobert.exporters.tensorflow", "tf", default=True, bench_label="tensorflow",
           summary="native TensorFlow 2 BERT, SavedModel serving_default"),
    Target("tf2onnx", "kobert.exporters.tf2onnx", "onnx", built_from="tf", default=True,
           summary="the SavedModel converted by tf2onnx (opset 17), a cross-check ONNX"),
    Target("mxnet", "kobert.exporters.mxnet", "mxnet", default=True, bench_label="mxnet (worker IPC)",
           summary="Gluon HybridBlock BERT, symbol.json + params (MXNet 1.9.1)"),
    Target("onnx-optimized", "kobert.exporters.onnx_tiers:optimized", "onnx", gate="fp32-fused",
           built_from="onnx", bench_label="onnxruntime optimized",
           summary="ONNX Runtime transformer fusions, exact GELU"),
    Target("onnx-fp16", "kobert.exporters.onnx_tiers:fp16", "onnx", gate="fp16", built_from="onnx",
           bench_label="onnxruntime fp16", summary="fused graph in float16, float32 outputs"),
    Target("onnx-int8", "kobert.exporters.onnx_tiers:int8", "onnx", gate="int8", built_from="onnx",
           bench_label="onnxruntime int8", summary="dynamic int8 quantization, per-channel weights"),
    Target("onnx-int8-static", "kobert.exporters.onnx_tiers:int8_static", "onnx", gate="int8", built_from="onnx",
           bench_label="onnxruntime int8 static", calibrated=True,
           summary="static QDQ int8 (uint8 activations, int8 per-channel weights) of the MatMuls, "
                   "calibrated on Korean text"),
    Target("tflite", "kobert.exporters.tflite:fp32", "tflite", built_from="tf", bench_label="tflite fp32",
           summary="TensorFlow Lite, float32"),
    Target("tflite-int8", "kobert.exporters.tflite:int8", "tflite", gate="int8", built_from="tf",
           bench_label="tflite int8", summary="TensorFlow Lite, dynamic-range int8 weights"),
    # After onnx-int8 (registry order is build order): `--to onnx-int8,hf-onnx` also ships the int8 file.
    Target("hf-onnx", "kobert.exporters.hf_onnx", "onnx", built_from="onnx",
           summary="Hugging Face folder (config, tokenizer, onnx/model.onnx) for Optimum and transformers.js"),
):
    register_target(_target)

# --- OpenVINO: the ONNX graph as an IR, compiled at each tier's own precision ------------------
register_runtime(RuntimeSpec("openvino", "kobert.runtimes.openvino:OpenVinoRuntime", "openvino"))
register_target(Target("openvino", "kobert.exporters.openvino:fp32", "openvino", built_from="onnx",
                       bench_label="openvino f32",
                       summary="OpenVINO IR of the ONNX graph, compiled with INFERENCE_PRECISION_HINT=f32"))
register_target(Target("openvino-bf16", "kobert.exporters.openvino:bf16", "openvino", gate="bf16",
                       built_from="onnx", bench_label="openvino bf16",
                       summary="the same IR compiled in bfloat16 (AVX512-BF16 or AMX CPUs)"))
register_target(Target("openvino-int8", "kobert.exporters.openvino:int8", "openvino", gate="int8",
                       built_from="onnx", bench_label="openvino int8", calibrated=True,
                       summary="NNCF static int8 of the IR, calibrated on Korean text (accuracy control "
                               "with a task --eval-set)"))

# --- deployable packages (kobert package <name>) --------------------------------------------

register_package(PackageSpec(
    "mms", "kobert.exporters.mms:build", needs="mxnet", companion="kobert.exporters.mms:config_path",
    summary="a Multi Model Server archive (.mar) of the mxnet artifact, with a handler needing only "
            "mxnet, numpy and tokenizers",
    options=(("--batch-size", int, 1, "the MMS batch size to register it with (recorded in the archive; "
              "MMS takes it as the batch_size of POST /models)"),)))

register_package(PackageSpec(
    "web", "kobert.exporters.web:build", needs="onnx",
    summary="a static page (onnxruntime-web wasm + transformers.js tokenizer) exposing window.kobert.run(texts)"))

# --- raw text in a SavedModel (tensorflow-text's SentencePiece op in the graph) ------------

register_runtime(RuntimeSpec("tf-text", "kobert.runtimes.tf_text:TFTextRuntime", "tf-text", quiet=TF_QUIET))
register_target(Target("tf-text", "kobert.exporters.tf_text", "tf-text",
                       summary="SavedModel that takes raw text: in-graph SentencePiece, then the tf BERT"))

# --- bfloat16 tier: shipped because it measured >= 1.3x torch fp32 side by side -------------
register_runtime(RuntimeSpec("torch-bf16", "kobert.runtimes.torch_bf16:TorchBf16Runtime", "torch"))
register_target(Target("torch-bf16", "kobert.exporters.torch_bf16", "torch-bf16", gate="bf16",
                       bench_label="torch bf16 (autocast)",
                       summary="transformers under torch bfloat16 autocast, bf16 matmul weights "
                               "(fast where the CPU has AVX512_BF16 or AMX)"))

# --- Keras 3: a trainable model of stock Keras / KerasHub classes, and back (`kobert import keras`) ---
register_runtime(RuntimeSpec("keras", "kobert.runtimes.keras:KerasRuntime", "keras", quiet=TF_QUIET))
register_target(Target("keras", "kobert.exporters.keras", "keras",
                       summary="Keras 3 model (.keras, KerasHub layers, exact GELU) with a raw-text preprocessor "
                               "for sequence classifiers; fine-tune with model.fit"))
