"""Runtime adapters: one module per framework, one API (see `base.Runtime`).

    rt = kobert.runtimes.load("artifacts/default", runtime="onnx")
    rt.run(input_ids, attention_mask, token_type_ids)  # -> {"last_hidden_state": ..., ...}
    rt.embed(["한국어 문장"], pooling="mean")
"""

from __future__ import annotations

from pathlib import Path



def load(export_dir: str | Path, runtime: str = "onnx", artifact: str | None = None, verify: bool = True):
    """Open one artifact of an export directory with the named runtime (see `kobert.registry.RUNTIMES`).

    `artifact` picks a manifest entry when a runtime can run several
    (runtime "onnx" runs "onnx", "tf2onnx" and the ONNX tiers). With `verify`
    (the default) every file of the artifact is checked against the manifest's
    sha256 before the framework reads it.
    """
    from kobert import registry

    return registry.runtime_spec(runtime).runtime_class()(export_dir, artifact, verify=verify)
