"""One behaviour per name: the sentence embedding `embed`, `similarity` and `kobert run` give by default."""

import inspect

from kobert.cli import build_parser
from kobert.runtimes.base import Runtime


def test_every_sentence_embedding_pools_the_same_way_by_default():
    embed = inspect.signature(Runtime.embed).parameters["pooling"].default
    similarity = inspect.signature(Runtime.similarity).parameters["pooling"].default
    run = build_parser().parse_args(["run", "DIR", "--runtime", "onnx"]).pooling
    assert embed == similarity == run == "mean"
