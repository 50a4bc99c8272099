"""OpenVINO's and NNCF's usage telemetry, kept off by the OpenVINO spoke (its runtime and exporter).

Both send events to Google Analytics (`import openvino`, every `convert_model`, NNCF's calls) unless a
consent file in the home folder says no: openvino_telemetry reads no file as consent, writes a client
id to ~/intel, and sends each event from a process forked from this threaded one. On a machine
without internet such a child can hang for ever in getaddrinfo on a lock another thread held at the
fork, and the export with it (seen: `kobert export --to ...,openvino-int8` never returned). Running a
model or building an artifact is not a reason to phone home, so kobert imports and converts with
both switched off: the converter skips telemetry when CI=true, NNCF when NNCF_CI is set (read when
nncf is first imported). This module imports no framework at import time.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

# What each library reads as "no telemetry"; also the environment of the child processes kobert starts.
TELEMETRY_OFF = {"CI": "true", "NNCF_CI": "1"}


@contextmanager
def telemetry_off():
    """Import openvino or nncf, or convert, in here: the variables are set for the block and then restored."""
    saved = {name: os.environ.get(name) for name in TELEMETRY_OFF}
    os.environ.update(TELEMETRY_OFF)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def import_openvino():
    """`import openvino` without its telemetry (the import itself sends an event)."""
    with telemetry_off():
        import openvino

    return openvino
