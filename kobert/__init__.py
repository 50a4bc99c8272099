"""kobert: one canonical KoBERT checkpoint, exported to TensorFlow, ONNX and MXNet, with proof of parity.

Importing this package imports no framework (torch, tensorflow, onnxruntime,
mxnet, tf2onnx); each is imported by the one module that needs it.
"""

from kobert.config import PRESETS, KoBertConfig, preset

__version__ = "0.1.0"
__all__ = ["KoBertConfig", "PRESETS", "preset", "get_tokenizer", "get_kobert_model", "__version__"]


def get_tokenizer(path=None):
    """A `transformers.PreTrainedTokenizerFast` for a KoBERT SentencePiece model or tokenizer dir."""
    from kobert.tokenizer import get_tokenizer as _get_tokenizer

    return _get_tokenizer(path)


def get_kobert_model(path=None):
    """A `transformers` model (BertModel or BertFor...) for a checkpoint dir, hub id or legacy state dict.

    With no argument: the shipped default model (an error names what is missing if none ships).
    """
    from kobert.runtimes.torch import load_reference_model

    return load_reference_model("default" if path is None else path)
