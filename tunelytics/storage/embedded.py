"""The embedded MongoDB-wire server (nx-27017) as a child process on a free loopback port.

Used when no MONGODB_URL is configured: for the demo, for development and in tests.
Everything talks to it through PyMongo exactly as to MongoDB.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from pymongo import MongoClient
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # If the API process is killed outright, the database must not outlive it.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedMongo:
    """Start with `with EmbeddedMongo(path) as mongo:`; `mongo.url` is the connection URL."""

    def __init__(self, data_dir: Path | str, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "nx-27017.log"
        command = [
            sys.executable,
            "-c",
            "from nx_27017.nx_27017 import main; main()",
            "--data-dir",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-file",
            str(log_path),
            "--pid-file",
            str(self.data_dir / "nx-27017.pid"),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.data_dir / "nx-27017.stderr", "ab"),  # noqa: SIM115
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            start_new_session=True,  # Ctrl-C reaches the API, which then stops this cleanly
        )
        self._wait_ready(timeout)
        log.info(
            "embedded MongoDB-wire server ready", extra={"url": self.url, "pid": self.process.pid}
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"embedded MongoDB-wire server exited with {self.process.returncode}; "
                    f"see {self.data_dir / 'nx-27017.stderr'}"
                )
            try:
                with MongoClient[dict[str, object]](
                    self.url, serverSelectionTimeoutMS=300
                ) as client:
                    client.admin.command("ping")
                return
            except PyMongoError as error:
                last_error = error
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"embedded MongoDB-wire server did not answer: {last_error}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedMongo:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
