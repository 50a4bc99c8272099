"""Runtime adapters: one module per framework, one API (see `base.Runtime`).

    rt = kobert.runtimes.load("artifacts/default", runtime="onnx")
    rt.run(input_ids, attention_mask, token_type_ids)  # -> {"last_hidden_state": ..., ...}
    rt.embed(["한국어 문장"], pooling="mean")
"""

from __future__ import annotations

from pathlib import Path

AUTO = "auto"


def load(export_dir: str | Path, runtime: str = "onnx", artifact: str | None = None, verify: bool = True,
         threads: int | None = None):
    """Open one artifact of an export directory with the named runtime (see `kobert.registry.RUNTIMES`).

    `artifact` picks a manifest entry when a runtime can run several
    (runtime "onnx" runs "onnx", "tf2onnx" and the ONNX tiers). With `verify`
    (the default) every file of the artifact is checked against the manifest's
    sha256 before the framework reads it.

    `runtime="auto"` opens the export's fastest artifact that passed its gate on this CPU
    (`kobert.runtimes.auto`, a short probe cached per CPU and export) and says which on stderr;
    a named `artifact` is opened by its own runtime instead. `threads` sizes the framework's intra-op
    threads (see `base.Runtime`).
    """
    from kobert import registry

    if runtime == AUTO:
        runtime, artifact = _auto(export_dir, artifact, verify)
    return registry.runtime_spec(runtime).runtime_class()(export_dir, artifact, verify=verify, threads=threads)


def _auto(export_dir, artifact: str | None, verify: bool) -> tuple[str, str]:
    from kobert import registry
    from kobert.progress import say
    from kobert.runtimes.auto import choose

    if artifact is not None:
        return registry.runtimes_for(artifact)[0], artifact
    choice = choose(export_dir, verify=verify)
    say(choice.reason)
    return choice.runtime, choice.artifact
