"""A Ray cluster on this machine's loopback interface, for tests and benchmarks of `encode --engine ray`.

`LocalRayCluster` runs `ray start --head` on 127.0.0.1 with its own port, temp dir and auth token, so it is
a cluster as a user would start one (drivers connect with `--address`), kept off the network and apart
from any other Ray on the machine. It is stopped by killing its own processes: `ray stop` would stop every
Ray on the machine, and a test cluster has nothing to save.
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
import time
from pathlib import Path

from orchestrion.core.engine import PRIVATE_RAY_ENV


def offline_ray_env(home: Path) -> dict[str, str]:
    """The environment for starting a Ray that must reach no address but 127.0.0.1.

    On top of PRIVATE_RAY_ENV: Ray's dashboard process looks for ~/ray_bootstrap_config.yaml to learn its cloud
    provider and otherwise asks the cloud metadata address (169.254.169.254); a HOME holding one that says
    "local" answers it. A `ray start` cluster also posts a "usage stats disabled" notice, here sent to a closed
    loopback port. Only the processes that start Ray need it (drivers keep their own HOME).
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "ray_bootstrap_config.yaml").write_text("provider:\n  type: local\n")
    return {**PRIVATE_RAY_ENV, "HOME": str(home), "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """`with LocalRayCluster(cpus=2) as cluster:` then drivers run with `cluster.env` against `cluster.address`."""

    def __init__(self, cpus: int, *, timeout: float = 300):
        # Short: Ray puts unix sockets under it, and a socket path may not pass 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="orc-ray-", dir="/tmp")
        token = Path(self.temp_dir) / "token"
        token.write_text(secrets.token_hex(32))
        # Ray (2.60 here) turns token auth on for `ray start`; our own token keeps drivers off ~/.ray/auth_token.
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), **PRIVATE_RAY_ENV}
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.cpus = cpus
        self.timeout = timeout
        self.start_s = 0.0

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalRayCluster:
        ray = Path(sys.executable).with_name("ray")
        started = time.perf_counter()
        run = subprocess.run(
            [str(ray), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
             "--ray-client-server-port", str(free_port()), "--num-cpus", str(self.cpus), "--include-dashboard",
             "false", "--disable-usage-stats", "--temp-dir", self.temp_dir],
            env={**self.env, **offline_ray_env(Path(self.temp_dir) / "home")}, capture_output=True, text=True,
            timeout=self.timeout,
        )  # fmt: skip
        if run.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed ({run.returncode}): {run.stderr[-3000:]}")
        self.start_s = time.perf_counter() - started
        return self

    def stop(self) -> list[int]:
        """SIGKILL the cluster's processes (as `ray stop --force` does: they sit on SIGTERM for many seconds)
        and remove its temp dir; returns the pids still alive after 15 s."""
        tree: set[int] = set()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = self.processes()
            for pid in found - tree:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            tree |= found
            if not any(_alive(p) for p in tree) and not (self.processes() - tree):
                break
            time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return [p for p in tree if _alive(p)]

    def processes(self) -> set[int]:
        """The cluster's processes and all their descendants (Ray's workers rename themselves, `ray::IDLE`,
        so they are found as children of the raylet)."""
        parents: dict[int, int] = {}
        roots: set[int] = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if self._started_here(cmdline) and int(entry.name) != os.getpid():
                roots.add(int(entry.name))
        tree, grew = set(roots), True
        while grew:
            children = {pid for pid, ppid in parents.items() if ppid in tree} - tree
            tree |= children
            grew = bool(children)
        return tree

    def _started_here(self, cmdline: bytes) -> bool:
        """Names our temp dir, or (Ray's client server) our GCS address."""
        return self.temp_dir.encode() in cmdline or any(
            a.startswith(b"--address=") and a.endswith(f":{self.port}".encode()) for a in cmdline.split(b"\0")
        )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent (init, after ray's daemonising) reaps it
