"""The MXNet half of the MXNet runtime: load a symbol + params pair and run it.

Runs in-process where mxnet imports, or as one persistent worker process in the
MXNet interpreter (`kobert.mxnet_env`) that serves requests over pipes::

    python -m kobert.runtimes.mxnet_worker <symbol.json> <params> '<input names json>'

Framing, both ways: an 8-byte big-endian length, then an `np.savez` payload
(loaded with allow_pickle=False). Requests hold the inputs by name; replies hold
`out0`, `out1`, ... in the symbol's output order and `forward_seconds` (the
plain SymbolBlock call inside the worker, for `kobert bench`), or `error` (a
string) on failure. The first reply, sent once the model has loaded, is `ready`
(the mxnet version) or `error`. This module imports mxnet only inside functions.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import time
import traceback
import warnings

import numpy as np

_HEADER = struct.Struct(">Q")
FORWARD_SECONDS = "forward_seconds"


# --- framing (used on both sides of the pipe; numpy only) --------------------


def write_message(stream, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _read_exactly(stream, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError(f"pipe closed with {remaining} of {size} bytes unread")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(stream) -> dict[str, np.ndarray] | None:
    """The next message, or None at a clean end of stream."""
    header = stream.read(_HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        header += _read_exactly(stream, _HEADER.size - len(header))
    (size,) = _HEADER.unpack(header)
    with np.load(io.BytesIO(_read_exactly(stream, size)), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


# --- the model (mxnet imported here) -----------------------------------------


def load_symbol_block(symbol_file: str, params_file: str, input_names: list[str]):
    import mxnet as mx

    with warnings.catch_warnings():
        # imports() warns that it cannot infer input dtypes before the first call; they come with the data.
        warnings.filterwarnings("ignore", message="Cannot decide type")
        block = mx.gluon.SymbolBlock.imports(symbol_file, list(input_names), params_file)
    block.hybridize(static_alloc=True)
    return block


def forward(block, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run the block on numpy inputs (already in the artifact's dtype); numpy outputs in symbol order."""
    import mxnet as mx

    outputs = block(*[mx.nd.array(a, dtype=a.dtype) for a in inputs])
    if isinstance(outputs, mx.nd.NDArray):
        outputs = [outputs]
    return [o.asnumpy() for o in outputs]


# --- the worker loop -----------------------------------------------------------


def serve(symbol_file: str, params_file: str, input_names: list[str]) -> int:
    # Keep the protocol stream clean: anything a library prints goes to stderr.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    protocol_in = sys.stdin.buffer
    try:
        import mxnet as mx

        block = load_symbol_block(symbol_file, params_file, input_names)
    except Exception:
        write_message(protocol_out, {"error": np.array(traceback.format_exc())})
        return 1
    write_message(protocol_out, {"ready": np.array(mx.__version__)})
    while True:
        request = read_message(protocol_in)
        if request is None:
            return 0
        try:
            missing = [name for name in input_names if name not in request]
            if missing:
                raise ValueError(f"request lacks inputs {missing}; the worker expects {input_names}")
            start = time.perf_counter()
            outputs = forward(block, [request[name] for name in input_names])
            reply = {f"out{i}": o for i, o in enumerate(outputs)}
            reply[FORWARD_SECONDS] = np.array(time.perf_counter() - start)
        except Exception:
            reply = {"error": np.array(traceback.format_exc())}
        write_message(protocol_out, reply)


if __name__ == "__main__":
    import json

    if len(sys.argv) != 4:
        print("usage: python -m kobert.runtimes.mxnet_worker <symbol.json> <params> '<input names json>'", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
