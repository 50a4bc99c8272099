"""The typed KoBERT config and its named presets.

`KoBertConfig` is the one description of an encoder's shape that every exporter
reads. It maps one-to-one onto the fields of a Hugging Face `BertConfig`, so a
checkpoint's `config.json` converts in both directions without loss.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

# --- the model contract: what every spoke, the judge and the runtime API agree on ---------

# Inputs, in call order, with the dtype the reference takes. A spoke may store ids in another
# dtype (MXNet reads float32) and says so in its manifest entry.
INPUTS: tuple[tuple[str, str], ...] = (("input_ids", "int64"), ("attention_mask", "int64"),
                                      ("token_type_ids", "int64"))
INPUT_NAMES: tuple[str, ...] = tuple(name for name, _ in INPUTS)
ENCODER_OUTPUTS = ("last_hidden_state", "pooler_output")


@dataclass(frozen=True)
class HeadSpec:
    """One task head: the transformers class, what it reads and what it outputs.

    `reads` is the encoder output the head's one dense layer is applied to; a head
    with several outputs splits that layer's last axis into them, in order (QA's
    (start, end)). `per_token` heads give one row per token (compared on valid
    tokens only); the others one row per sequence. `layer` is transformers' name
    for that dense layer (its tensors are `<layer>.weight` and `<layer>.bias`).
    """

    architecture: str
    reads: str | None = None
    outputs: tuple[str, ...] = ()
    per_token: bool = False
    # transformers builds token-classification and QA models without a pooler.
    has_pooler: bool = True
    layer: str | None = None


HEAD_SPECS: dict[str, HeadSpec] = {
    "none": HeadSpec("BertModel"),
    "sequence_classification": HeadSpec("BertForSequenceClassification", "pooler_output", ("logits",),
                                        layer="classifier"),
    "token_classification": HeadSpec("BertForTokenClassification", "last_hidden_state", ("logits",),
                                     per_token=True, has_pooler=False, layer="classifier"),
    "question_answering": HeadSpec("BertForQuestionAnswering", "last_hidden_state", ("start_logits", "end_logits"),
                                   per_token=True, has_pooler=False, layer="qa_outputs"),
}
# The task heads kobert knows. "none" means a bare encoder (embeddings only).
HEADS = tuple(HEAD_SPECS)
HEAD_ARCHITECTURES = {head: spec.architecture for head, spec in HEAD_SPECS.items()}
# transformers architecture name -> head; pretraining classes export their encoder only.
ARCHITECTURE_HEADS = {"BertForPreTraining": "none", "BertForMaskedLM": "none",
                      **{spec.architecture: head for head, spec in HEAD_SPECS.items()}}


def label_name(id2label: dict[int, str], index: int) -> str:
    """A label id's name: the config's, else transformers' default for an unnamed id, `LABEL_<id>`."""
    return id2label.get(index, f"LABEL_{index}")


POSITIVE_INT_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                       "intermediate_size", "max_position_embeddings", "type_vocab_size")


@dataclass(frozen=True)
class KoBertConfig:
    vocab_size: int = 8002
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 1
    head: str = "none"
    num_labels: int = 0
    id2label: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        for name in POSITIVE_INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.pad_token_id, bool) or not isinstance(self.pad_token_id, int) or self.pad_token_id < 0:
            raise ValueError(f"pad_token_id must be a non-negative integer, got {self.pad_token_id!r}")
        if isinstance(self.layer_norm_eps, bool) or not isinstance(self.layer_norm_eps, (int, float)) or not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be a positive number, got {self.layer_norm_eps!r}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; expected one of {', '.join(HEADS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in ("gelu", "gelu_python"):
            # Every exporter implements exact erf GELU; anything else would silently differ.
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported (only exact 'gelu')")
        if self.head == "question_answering" and self.num_labels != 2:
            raise ValueError("a question_answering head has exactly 2 labels (start, end)")
        if self.head in ("sequence_classification", "token_classification") and self.num_labels < 1:
            raise ValueError(f"a {self.head} head needs num_labels >= 1")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def head_spec(self) -> HeadSpec:
        return HEAD_SPECS[self.head]

    @property
    def label_names(self) -> list[str]:
        """Label id i's name, for i in range(num_labels) (`label_name`)."""
        return [label_name(self.id2label, i) for i in range(self.num_labels)]

    @property
    def has_pooler(self) -> bool:
        return self.head_spec.has_pooler

    @property
    def head_outputs(self) -> tuple[str, ...]:
        """The task outputs (logits, or start/end logits); empty for a bare encoder."""
        return self.head_spec.outputs

    @property
    def output_names(self) -> tuple[str, ...]:
        """Output names, identical in every framework, in output order."""
        encoder = ENCODER_OUTPUTS if self.has_pooler else ENCODER_OUTPUTS[:1]
        return encoder + self.head_outputs

    @property
    def per_token_outputs(self) -> tuple[str, ...]:
        """Outputs with one row per token: compared on valid (attention_mask == 1) tokens only."""
        return ("last_hidden_state",) + (self.head_outputs if self.head_spec.per_token else ())

    def with_head(self, head: str, num_labels: int = 0) -> "KoBertConfig":
        return dataclasses.replace(self, head=head, num_labels=num_labels if head != "none" else 0)

    # --- conversion to and from Hugging Face config.json -------------------------

    def to_hf_dict(self) -> dict:
        d = {
            "architectures": [HEAD_ARCHITECTURES[self.head]],
            "model_type": "bert",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "hidden_act": self.hidden_act,
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02,
            "pad_token_id": self.pad_token_id,
        }
        if self.head != "none":
            labels = self.id2label or dict(enumerate(self.label_names))
            d["id2label"] = {str(i): name for i, name in labels.items()}
            d["label2id"] = {name: i for i, name in labels.items()}
        return d

    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "config.json") -> "KoBertConfig":
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object, got a {type(d).__name__}")
        if d.get("model_type", "bert") != "bert":
            raise ValueError(f"{source}: model_type {d.get('model_type')!r} is not a BERT model")
        architectures = d.get("architectures") or ["BertModel"]
        arch = architectures[0]
        if arch not in ARCHITECTURE_HEADS:
            raise ValueError(
                f"{source}: unknown head architecture {arch!r}; "
                f"kobert knows {', '.join(ARCHITECTURE_HEADS)}"
            )
        head = ARCHITECTURE_HEADS[arch]
        try:
            id2label = {int(k): str(v) for k, v in (d.get("id2label") or {}).items()}
            num_labels = 0 if head == "none" else int(d.get("num_labels") or len(id2label) or 2)
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"{source}: id2label must map integer ids to names, num_labels be an integer") from None
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in fields and k not in ("head", "num_labels", "id2label")}
        if kwargs.get("pad_token_id") is None:
            kwargs["pad_token_id"] = 1
        try:
            return cls(head=head, num_labels=num_labels, id2label=id2label if head != "none" else {}, **kwargs)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_hf_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_file(cls, path: str | Path) -> "KoBertConfig":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_hf_dict(d, source=str(path))


PRESETS: dict[str, KoBertConfig] = {
    # Fast enough for unit tests: every code path, a few ms per forward.
    "tiny": KoBertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    # Shipped-default scale: a small KoBERT that fits in ~25 MB.
    "small": KoBertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    # SKT KoBERT-base: 12 x 768, 12 heads, FFN 3072, 512 positions, vocab 8002, pad id 1.
    "base": KoBertConfig(),
}


def preset(name: str) -> KoBertConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}") from None
