"""The supervisor's decisions without processes: handle_* methods, generations, backoff, halt.

Signal handlers only queue; everything else is plain methods, so these tests call them directly
with fake workers (no fork, no signals). The real processes are in tests/integration/test_workers.py.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from asgiserve.config import Config
from asgiserve.errors import AsgiserveError
from asgiserve.workers import supervisor as sup
from asgiserve.workers.process import PidFile, Worker, describe_exit
from asgiserve.workers.supervisor import Supervisor


class FakeSupervisor(Supervisor):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.sent: list[tuple[int, int]] = []
        self.next_pid = 1000

    def spawn_worker(self) -> None:
        self.spawned += 1
        self.next_pid += 1
        self.workers[self.next_pid] = Worker(self.next_pid, -1, self.generation, self.spawned, 0)

    def _kill(self, w: Worker, sig: int) -> None:
        self.sent.append((w.pid, sig))

    def exit(self, pid: int, status: int = 0) -> None:
        """What reap_workers does for one exited worker (minus the pipe)."""
        self.on_worker_exit(self.workers.pop(pid), status)

    def serve_all(self) -> None:
        for w in self.workers.values():
            if not w.stopping:
                self.on_message(w, b"R")


def make(workers: int = 2, **options: object) -> FakeSupervisor:
    return FakeSupervisor(Config(app="x:app", workers=workers, **options))


EXIT_3 = 3 << 8  # a waitpid status for "exited with code 3"
KILLED = signal.SIGKILL  # a waitpid status for "killed by SIGKILL"


def test_spawns_to_target_and_announces_ready_once_all_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    notes: list[str] = []
    monkeypatch.setattr(sup.systemd, "ready", lambda status="": notes.append(status))
    s = make(3)
    s.manage_workers()
    assert len(s.workers) == 3 and not s.announced
    s.on_message(next(iter(s.workers.values())), b"R")
    s.manage_workers()
    assert not s.announced and len(s.workers) == 3  # waiting, not spawning more
    s.serve_all()
    s.manage_workers()
    assert s.announced and notes == ["3 of 3 worker(s) serving"]


def test_ttin_ttou_change_the_target_and_retire_one_gracefully() -> None:
    s = make(2)
    s.manage_workers()
    s.serve_all()
    s.manage_workers()
    s.handle_ttin()
    s.manage_workers()
    assert len(s.workers) == 3
    s.serve_all()
    s.handle_ttou()
    s.manage_workers()
    assert [sig for _, sig in s.sent] == [signal.SIGTERM]
    s.handle_ttou()
    s.handle_ttou()  # never below one
    assert s.target == 1


def test_hup_starts_a_new_generation_and_drains_the_old_only_when_it_serves() -> None:
    s = make(2)
    s.manage_workers()
    s.serve_all()
    s.manage_workers()
    old = set(s.workers)
    s.handle_hup()
    s.manage_workers()
    assert len(s.workers) == 4 and s.sent == []
    s.serve_all()
    s.manage_workers()
    assert {pid for pid, sig in s.sent if sig == signal.SIGTERM} == old


def test_failed_reload_keeps_the_old_generation() -> None:
    s = make(2)
    s.manage_workers()
    s.serve_all()
    s.manage_workers()
    old = set(s.workers)
    s.handle_hup()
    s.manage_workers()
    new = sorted(set(s.workers) - old)
    s.workers[new[0]].error = {"message": "SyntaxError in app.py"}
    s.exit(new[0], EXIT_3)
    assert s.generation == 0 and s.halt_reason is None
    assert {pid for pid, _ in s.sent} == {new[1]}  # the other new one is stopped
    s.exit(new[1], EXIT_3)  # its own boot failure changes nothing more
    s.manage_workers()
    assert set(s.workers) == old and s.stopping is None


def test_boot_failure_before_anything_served_halts() -> None:
    s = make(2)
    s.manage_workers()
    first = next(iter(s.workers))
    s.workers[first].error = {"message": 'could not import module "app"'}
    s.exit(first, EXIT_3)
    assert s.halt_reason == 'worker failed to boot: could not import module "app"'
    assert s.stopping == "halt"


def test_crashes_back_off_and_a_clean_exit_does_not_count() -> None:
    s = make(2)
    s.manage_workers()
    s.serve_all()
    pids = list(s.workers)
    s.exit(pids[0], KILLED)
    assert s.next_spawn_at <= sup.time.monotonic()  # first crash: replace at once
    s.manage_workers()
    s.exit(pids[1], 1 << 8)
    assert s.next_spawn_at > sup.time.monotonic()  # repeated: wait
    spawned = s.spawned
    s.manage_workers()
    assert s.spawned == spawned
    s2 = make(2)
    s2.manage_workers()
    s2.exit(next(iter(s2.workers)), 0)
    assert not s2.crashes


def test_max_requests_replacement_before_the_old_worker_stops() -> None:
    s = make(2, max_requests=10)
    s.manage_workers()
    s.serve_all()
    s.manage_workers()
    tired = next(iter(s.workers.values()))
    s.on_message(tired, b"M")
    s.manage_workers()
    assert len(s.workers) == 3 and s.sent == []  # replacement first
    s.serve_all()
    s.manage_workers()
    assert s.sent == [(tired.pid, signal.SIGTERM)]


def test_timeout_sends_abort_then_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    s = make(2, timeout=5)
    s.manage_workers()
    stuck = next(iter(s.workers.values()))
    stuck.last_seen -= 6
    s.murder_workers()
    assert s.sent == [(stuck.pid, signal.SIGABRT)]
    assert stuck.kill_at is not None
    stuck.kill_at -= sup.ABORT_GRACE
    s.murder_workers()
    assert s.sent[-1] == (stuck.pid, signal.SIGKILL)


def test_signals_are_only_queued_by_the_handler() -> None:
    s = make(2)
    s._enqueue(signal.SIGTTIN, None)
    assert s.target == 2 and list(s.signals) == [signal.SIGTTIN]
    s.dispatch(s.signals.popleft())
    assert s.target == 3


def test_describe_exit() -> None:
    assert describe_exit(0, False) == ("exited with code 0", True)
    assert describe_exit(3 << 8, False) == ("exited with code 3", False)
    assert describe_exit(signal.SIGKILL, False)[0] == "was killed by signal 9 (SIGKILL). Perhaps out of memory?"
    assert describe_exit(signal.SIGKILL, True)[0] == "was killed by signal 9 (SIGKILL)"


def test_pid_file(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    pf = PidFile(str(path))
    pf.check()
    pf.write()
    assert path.read_text() == f"{os.getpid()}\n"
    pf.check()  # our own PID is fine
    pf.remove()
    assert not path.exists()
    path.write_text(f"{os.getppid()}\n")  # a live process that is not us
    with pytest.raises(AsgiserveError, match="already running"):
        pf.check()
    pf.remove()
    assert path.exists()  # not ours to remove
