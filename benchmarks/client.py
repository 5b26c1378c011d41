"""Run a load generator as a child process: bounded in time, its own CPU seconds measured.

wrk, wsload and h2load all run this way: pinned with taskset, killed if they overrun their
deadline (or on Ctrl-C), and waited for with ``wait4`` so the harness gets the client's own
rusage (its CPU share tells when the client, not the server, was the limit).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Optional


@dataclass
class ClientRun:
    returncode: int
    wall: float  # seconds
    cpu: float  # the client's user + system CPU seconds
    stdout: str
    stderr: str


def pin(cpu: Optional[int]) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


def run_client(cmd: list[str], deadline: float, env: Optional[dict[str, str]] = None) -> ClientRun:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        killer = threading.Timer(deadline, proc.kill)  # bound the run even if the client hangs
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # wait4, not wait: the client's own rusage
        except BaseException:  # Ctrl-C: do not leave it running
            proc.kill()
            proc.wait()
            raise
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return ClientRun(proc.returncode, wall, usage.ru_utime + usage.ru_stime,
                         out.read().decode(errors="replace"), err.read().decode(errors="replace"))
