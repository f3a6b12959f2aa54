"""A real Ray cluster on this machine, for tests and benchmarks: a head node and worker nodes
started with ``ray start`` (as a user would on several machines), on free ports, in a temporary
folder of its own, each node offering ``num_cpus`` CPUs and a small object store.

Never ``ray stop``: that would end every Ray process of this user on the machine, including
other people's clusters. :meth:`LocalRayCluster.stop` ends exactly the processes this cluster
started (found by its own temporary folder in their command line), also after a failed test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

OBJECT_STORE_BYTES = 200_000_000


def free_port() -> int:
    """A TCP port nobody listens on at this moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ray_executable() -> str:
    """The ``ray`` command of this interpreter's environment."""
    return str(Path(sys.executable).parent / "ray")


class LocalRayCluster:
    """``ray start --head`` plus ``workers`` × ``ray start --address``, each node with
    ``num_cpus`` CPUs. Use as a context manager (or call :meth:`stop`); ``address`` is what
    ``--address`` takes. Raises RuntimeError when a node does not come up within ``timeout``."""

    def __init__(self, workers: int = 1, *, num_cpus: int = 1, timeout: float = 120.0) -> None:
        self.workers = workers
        self.num_cpus = num_cpus
        self.timeout = timeout
        # Ray's socket paths live under this folder: it must stay short (108-byte limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rw-ray-", dir="/tmp"))
        self._token = self.temp_dir / "auth_token"
        self._token.write_text(secrets.token_hex(32))
        self._token.chmod(0o600)
        self.address = ""
        self.started_seconds = 0.0

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        began = time.monotonic()
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self._ray_start("--head", f"--port={port}", f"--temp-dir={self.temp_dir}",
                        "--include-dashboard=false",
                        f"--dashboard-port={free_port()}")
        for _ in range(self.workers):
            self._ray_start(f"--address={self.address}")
        self._wait_for_nodes(1 + self.workers)
        self.started_seconds = time.monotonic() - began

    def _ray_start(self, *args: str) -> None:
        command = [
            ray_executable(), "start", *args, f"--num-cpus={self.num_cpus}",
            f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats",
            "--node-ip-address=127.0.0.1", f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}", f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout,
                              env=self.environment())
        if done.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def environment(self) -> dict[str, str]:
        """The environment for this cluster's ``ray`` commands and drivers: token
        authentication with a token of its own (never the user's ``~/.ray/auth_token``, which
        Ray would otherwise pick up or create), no usage reporting."""
        return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self._token)}

    def _wait_for_nodes(self, count: int) -> None:
        """Until ``ray status`` lists ``count`` live nodes (polled, bounded by timeout)."""
        deadline = time.monotonic() + self.timeout
        pause = threading.Event()
        last = ""
        while time.monotonic() < deadline:
            done = subprocess.run([ray_executable(), "status", f"--address={self.address}"],
                                  capture_output=True, text=True, timeout=self.timeout,
                                  env=self.environment())
            last = done.stdout + done.stderr
            active = last.split("Active:", 1)[-1].split("Pending:", 1)[0]
            if done.returncode == 0 and active.count("node_") >= count:
                return
            pause.wait(0.5)
        raise RuntimeError(f"{count} Ray nodes not up within {self.timeout}s:\n{last}")

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: those whose command line names our temporary
        folder (the nodes' services), and everything they started (agents and workers, which
        rename themselves ``ray::...``)."""
        mine = str(self.temp_dir)
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(mine in part for part in proc.info["cmdline"] or ()):
                    found[proc.pid] = proc
                    found.update((child.pid, child) for child in proc.children(recursive=True))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return list(found.values())

    def stop(self) -> None:
        """End this cluster's processes (SIGTERM, then SIGKILL after 10 s) and remove its
        folder. Safe to call twice, and after a failed start."""
        procs = self.processes()
        for proc in procs:
            with _gone():
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=10)
        for proc in alive:
            with _gone():
                proc.kill()
        psutil.wait_procs(alive, timeout=10)
        leftover = self.processes()  # a worker started while we were stopping the others
        for proc in leftover:
            with _gone():
                proc.kill()
        psutil.wait_procs(leftover, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class _gone:
    """Ignore a process that ended meanwhile."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is not None and issubclass(kind, psutil.NoSuchProcess)
