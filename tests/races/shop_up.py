"""``shop up`` as a child process for the storm tests: started on a free port, awaited until
it answers ``/health``, stopped with SIGINT (SIGKILL for the whole group if it hangs)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def shop_command() -> str:
    return str(Path(sys.executable).parent / "shop")


@asynccontextmanager
async def shop_up(env: Mapping[str, str], *, workers: int = 2) -> AsyncIterator[str]:
    """The base URL of a ``shop up --workers N`` serving with ``env``."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        shop_command(),
        "up",
        "--port",
        str(port),
        "--workers",
        str(workers),
        env=dict(env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as probe:
            for _ in range(300):
                try:
                    if (await probe.get("/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("shop up did not start serving")
        yield base
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
