"""The MXNet exporter's main-venv half: hand the canonical weights to the MXNet interpreter.

MXNet 1.9.1 cannot import with numpy 2, so the Gluon model lives in its own
module, `kobert.exporters.mxnet_gluon`, run in the MXNet interpreter (see
`kobert.mxnet_env`). `export` saves the canonical weights to a temporary
directory, runs `python -m kobert.exporters.mxnet_gluon <canonical_dir> <out_dir>`
there, and turns its one-line JSON report into the manifest entry. This module
imports no mxnet.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from kobert.canonical import CanonicalWeights
from kobert.exporters import ExportedArtifact
from kobert.mxnet_env import mxnet_module_command

ARTIFACT_NAME = "mxnet"
GLUON_MODULE = "kobert.exporters.mxnet_gluon"
# A hung MXNet interpreter is killed after this long (a KoBERT-base export takes about a minute).
EXPORT_TIMEOUT_S = 1800


class MXNetExportError(RuntimeError):
    """The MXNet export subprocess failed; the message carries its stderr."""


def export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
    """Write `export_dir/mxnet/kobert-symbol.json` and `kobert-0000.params` via the MXNet interpreter."""
    out_dir = (Path(export_dir) / ARTIFACT_NAME).resolve()  # the subprocess runs elsewhere
    out_dir.mkdir(parents=True, exist_ok=True)
    # Inside the export's own (staging) folder: an interrupted export leaves nothing in /tmp.
    with tempfile.TemporaryDirectory(prefix="canonical-", dir=out_dir.parent) as canonical_dir:
        weights.save(canonical_dir)
        command = mxnet_module_command(GLUON_MODULE, canonical_dir, out_dir)
        proc = command.run(EXPORT_TIMEOUT_S, "MXNet export", MXNetExportError)
    if proc.returncode != 0:
        stderr = proc.stderr.strip()
        # The first line is what the CLI shows: end it with the interpreter's last word (its exception).
        raise MXNetExportError(
            f"MXNet export failed (exit code {proc.returncode}): {(stderr.splitlines() or ['(no output)'])[-1]}\n"
            f"{command.argv[0]} -m {GLUON_MODULE}:\n{stderr[-4000:]}"
        )
    report = _last_json_line(proc.stdout)
    return ExportedArtifact(
        name=ARTIFACT_NAME,
        files=[f"{ARTIFACT_NAME}/{name}" for name in report["files"]],
        inputs=report["inputs"],
        outputs=list(weights.config.output_names),
        framework=f"mxnet {report['mxnet_version']}",
    )


def _last_json_line(stdout: str) -> dict:
    # The report is the last stdout line (mxnet may print before it).
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise MXNetExportError(f"MXNet export printed no JSON report; stdout was:\n{stdout[-2000:]}") from None
