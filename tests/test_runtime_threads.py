"""`threads=`: each runtime hands the count to its framework's own setting, read back from the framework."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kobert import runtimes
from kobert.checkpoint import init_checkpoint
from kobert.config import preset
from kobert.export import export


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("threads")
    checkpoint = init_checkpoint(preset("tiny"), root / "ck", seed=9)
    targets = ["onnx", "tf"] + (["openvino"] if _installed("openvino") else [])
    return export(checkpoint, root / "export", targets=targets).out


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_onnx_runtime_sessions_get_the_thread_count(exported):
    with runtimes.load(exported, runtime="onnx", threads=1) as runtime:
        options = runtime.session.get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
        runtime.run(np.arange(5, 12)[None])


def test_openvino_compiles_with_the_thread_count(exported):
    ov = pytest.importorskip("openvino")
    with runtimes.load(exported, runtime="openvino", threads=1) as runtime:
        assert int(runtime.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        assert runtime.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32  # the tier's own hint kept


def test_torch_sets_its_process_wide_count(exported):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        with runtimes.load(exported, runtime="torch", threads=1):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_tensorflow_takes_the_count_once_per_process_and_names_a_conflict(exported):
    script = textwrap.dedent(f"""
        import tensorflow as tf
        from kobert import runtimes
        runtimes.load({str(exported)!r}, runtime="tf", threads=1).run([[5, 6, 7]])
        print(tf.config.threading.get_intra_op_parallelism_threads())
        runtimes.load({str(exported)!r}, runtime="tf", threads=1)  # the same count again is fine
        try:
            runtimes.load({str(exported)!r}, runtime="tf", threads=2)
        except ValueError as e:
            print(e)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    first, error = done.stdout.strip().splitlines()[-2:]
    assert first == "1"
    assert error.startswith("threads=2: TensorFlow already runs with 1 intra-op threads in this process"), error


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_thread_count_is_one_clear_error(exported, bad):
    with pytest.raises(ValueError, match=r"^threads: expected a positive integer or None, got"):
        runtimes.load(exported, runtime="onnx", threads=bad)
