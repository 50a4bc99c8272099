"""A local Multi Model Server on 127.0.0.1, started and stopped by its own process ids.

For tests and benchmarks of `kobert package mms` archives. Facts about MMS
1.1.11 this works around:
- it keeps its PID file in TMPDIR (`/tmp/.model_server.pid` by default) and
  its worker sockets in java.io.tmpdir, so each instance gets its own TMPDIR
  (and TEMP, which the launcher turns into -Djava.io.tmpdir);
- it refuses ports >= 32768, below the usual ephemeral range, so a free port
  is picked from `PORT_RANGE` by binding it;
- `/ping` answers Healthy even when a model's worker failed, so a model counts
  as ready when its registration (synchronous) returned and the management
  API reports a READY worker.
The launcher runs in a new session, so the Java frontend and its Python
workers share one process group: `stop` ends that group, and `leftover_pids`
says whether anything of it survived. Framework-free: standard library only.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from kobert.exporters.mms import DEFAULT_MAX_BATCH_DELAY_MS, config_properties, registration_query
from kobert.mxnet_env import find_mxnet_python

PORT_RANGE = (20000, 32767)
HOST = "127.0.0.1"


def mms_launcher() -> Path | None:
    """`multi-model-server` beside the MXNet interpreter (where ci/setup.sh installs it), or None."""
    python = find_mxnet_python()
    if python is None:
        return None
    launcher = Path(python).parent / "multi-model-server"
    return launcher if launcher.is_file() else None


def free_port(exclude: tuple[int, ...] = ()) -> int:
    """A port in `PORT_RANGE` that 127.0.0.1 can bind now."""
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        if port in exclude:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {PORT_RANGE} on {HOST}")


def http(method: str, url: str, body: bytes | None = None, timeout: float = 60,
         content_type: str = "application/json") -> tuple[int, bytes]:
    """(status, body) of one request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class LocalModelServer:
    """`with LocalModelServer(launcher, store, workdir) as mms:` ... `mms.register(...)`, `mms.predict(...)`."""

    def __init__(self, launcher: Path, model_store: Path, workdir: Path):
        self.launcher = Path(launcher)
        self.model_store = Path(model_store).resolve()
        self.workdir = Path(workdir).resolve()
        self.inference_port = free_port()
        self.management_port = free_port(exclude=(self.inference_port,))
        self.inference_url = f"http://{HOST}:{self.inference_port}"
        self.management_url = f"http://{HOST}:{self.management_port}"
        self.tmpdir = self.workdir / "tmp"
        self.config_file = self.workdir / "config.properties"
        self.log_file = self.workdir / "mms.log"
        self.process: subprocess.Popen | None = None

    def config_properties(self) -> str:
        """The configuration `kobert package mms` writes, on this server's ports and model store."""
        return config_properties(self.model_store, self.inference_url, self.management_url)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(TMPDIR=str(self.tmpdir), TEMP=str(self.tmpdir), LOG_LOCATION=str(self.workdir / "logs"),
                   METRICS_LOCATION=str(self.workdir / "logs"))
        for name in ("PYTHONPATH", "PYTHONHOME"):  # the MXNet venv's own numpy, never the main venv's
            env.pop(name, None)
        return env

    def start(self, models: tuple[str, ...] = (), timeout: float = 120) -> "LocalModelServer":
        """Start MMS and wait for /ping; `models` ("name=file.mar") load at startup, with batch size 1."""
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config_properties(), encoding="utf-8")
        command = [str(self.launcher), "--start", "--foreground", "--mms-config", str(self.config_file),
                   "--model-store", str(self.model_store)]
        if models:
            command += ["--models", *models]
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(command, cwd=self.workdir, env=self._env(), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return self._wait_for_ping(timeout)
        except BaseException:  # `with` never reaches __exit__ when __enter__ fails: end the group here
            self.stop()
            raise

    def _wait_for_ping(self, timeout: float) -> "LocalModelServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"MMS exited with {self.process.returncode} before answering /ping: "
                                   f"{self.log_tail()}")
            try:
                status, _ = http("GET", f"{self.inference_url}/ping", timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"MMS did not answer /ping within {timeout:.0f} s: {self.log_tail()}")

    def register(self, mar_name: str, model_name: str, batch_size: int = 1,
                 max_batch_delay_ms: int = DEFAULT_MAX_BATCH_DELAY_MS, timeout: float = 120) -> dict:
        """Register an archive of the model store; its description once a worker is READY."""
        query = registration_query(mar_name, model_name, batch_size, max_batch_delay_ms)
        status, body = http("POST", f"{self.management_url}/{query}", timeout=timeout)
        if status != 200:
            raise RuntimeError(f"MMS refused to register {mar_name} ({status}): {body.decode(errors='replace')}")
        return self.wait_ready(model_name, timeout=10)

    def wait_ready(self, model_name: str, timeout: float = 120) -> dict:
        """The model's description once every worker is READY (a failed worker never is)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                description = self.describe(model_name)
            except RuntimeError:  # a startup model is registered a moment after /ping answers
                description = {}
            workers = description.get("workers", [])
            if workers and all(w.get("status") == "READY" for w in workers):
                return description
            if time.monotonic() > deadline:
                raise RuntimeError(f"MMS model {model_name!r} has no READY worker after {timeout:.0f} s "
                                   f"(workers: {workers}): {self.log_tail()}")
            time.sleep(0.2)

    def describe(self, model_name: str) -> dict:
        status, body = http("GET", f"{self.management_url}/models/{model_name}")
        if status != 200:
            raise RuntimeError(f"MMS knows no model {model_name!r} ({status}): {body.decode(errors='replace')}")
        described = json.loads(body)
        return described[0] if isinstance(described, list) else described

    def predict(self, model_name: str, payload) -> tuple[int, object]:
        """(status, decoded JSON reply) of `POST /predictions/<model_name>`."""
        status, body = http("POST", f"{self.inference_url}/predictions/{model_name}",
                            json.dumps(payload, ensure_ascii=False).encode("utf-8"))
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def post_bytes(self, model_name: str, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
        """(status, raw reply) of `POST /predictions/<model_name>` with `body` as it is."""
        return http("POST", f"{self.inference_url}/predictions/{model_name}", body, content_type=content_type)

    def worker_pids(self, model_name: str) -> dict[str, int]:
        """{worker id: process id} of a model's Python workers (a restarted worker has a new pid).

        The management API names a worker `9000-cc61a179`, not by its pid: 9000 is the number in the
        socket name (`.mms.sock.9000`) that the worker's command line carries.
        """
        ids = {str(w.get("id")).split("-")[0]: str(w.get("id")) for w in self.describe(model_name).get("workers", [])}
        found = {}
        for pid in self.group_pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            for arg in argv:
                number = arg.rsplit(".", 1)[-1]
                if ".mms.sock." in arg and number in ids:
                    found[ids[number]] = pid
        return found

    def log_tail(self, characters: int = 2000) -> str:
        logs = [self.log_file, *sorted((self.workdir / "logs").glob("*.log"))]
        text = "\n".join(p.read_text(errors="replace")[-characters:] for p in logs if p.is_file())
        return text[-characters:]

    def worker_log(self) -> str:
        """What the Python workers printed (MMS copies their stdout/stderr into its logs)."""
        return "\n".join(p.read_text(errors="replace") for p in sorted((self.workdir / "logs").glob("*.log")))

    def group_pids(self) -> list[int]:
        """Processes of this server's process group: the launcher, Java, its workers."""
        if self.process is None:
            return []
        group, found = self.process.pid, []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # After the command name: state, ppid, pgrp.
            if int(fields[2]) == group and fields[0] != "Z":
                found.append(int(entry.name))
        return found

    def stop(self, timeout: float = 20) -> None:
        """End the launcher's process group (TERM, then KILL) and reap the launcher."""
        if self.process is None:
            return
        group = self.process.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout / 2
            while time.monotonic() < deadline and self.group_pids():
                time.sleep(0.1)
                self.process.poll()
            if not self.group_pids():
                break
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def leftover_pids(self) -> list[int]:
        return self.group_pids()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
