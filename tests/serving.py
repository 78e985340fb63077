"""Start the real ``sdk serve`` as a subprocess on 127.0.0.1 and talk to it over HTTP."""

from __future__ import annotations

import io
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# Ray's worker processes take ports 10002-19999 by default (its min/max_worker_port).
_ABOVE_RAY_WORKERS = 20000


def free_port() -> int:
    """A free port below the kernel's ephemeral range when there is room, else any free port.

    A port from bind(0) is free only until another process's bind(0) is handed the same one, and a
    Ray Serve start launches a dozen processes that bind(0) between our pick and its proxy's bind (a
    CI run lost that race: "Address already in use"). Below the ephemeral range and above Ray's
    worker ports, no such bind can take it."""
    low = _ephemeral_low()
    for _ in range(50):
        port = random.randrange(_ABOVE_RAY_WORKERS, low) if low > _ABOVE_RAY_WORKERS + 100 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port found between {_ABOVE_RAY_WORKERS} and {low}")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152  # the IANA range, which macOS and Windows use


class Server:
    """``with Server("srcnn3", "--tile", "64") as s: s.client.post(...)``; stopped by SIGTERM."""

    def __init__(
        self, model: str, *args: str, token: str | None = None, log_dir: Path | None = None, start_timeout: float = 90.0
    ):
        self.model = model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.args = ["--backend", "ort-cpu", "--port", str(self.port), *args]
        if token:
            self.args += ["--token", token]
        self.log_path = Path(log_dir or "/tmp") / f"sdk-serve-{self.port}.log"
        self.start_timeout = start_timeout
        self.proc = None
        self.client = None

    def __enter__(self) -> Server:
        import httpx

        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sdk", "serve", self.model, *self.args],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.Client(base_url=self.url, timeout=60, headers=headers)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sdk serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.client.get("/v2/health/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sdk serve did not become ready in {self.start_timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.client.close()
        self._log.close()
        return self.proc.returncode

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def metric(self, name: str, **labels) -> float:
        """One sample of /metrics (0 when absent), read with prometheus-client's own parser."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.client.get("/metrics").text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


def encode(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def padded(png: bytes, size: int) -> bytes:
    """``png`` with a private ancillary chunk of ``size`` bytes after its header: a large body around a
    small picture (Pillow reads past the chunk, and keeps a copy of it)."""
    end = 8 + 4 + 4 + 13 + 4  # the signature, then IHDR: length, type, 13 bytes, CRC
    payload = bytes(size)
    chunk = struct.pack(">I", size) + b"prVt" + payload + struct.pack(">I", zlib.crc32(b"prVt" + payload))
    return png[:end] + chunk + png[end:]


def decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth picture with some texture (noise alone is no test of an upscaler)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [128 + 90 * np.sin(x / (7 + seed % 5)), 128 + 90 * np.cos(y / 9), 128 + 60 * np.sin((x + y) / 13)], -1
    )
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
