"""File watching for --reload: which files count (the rules) and a thread that reports changes.

The rules are the README's ("Development loop": roots, include and exclude globs, defaults,
examples); WatchRules implements them, DEFAULT_EXCLUDES and ENV_MARKERS are the defaults.

Excluded directories are pruned, not filtered after the fact: every directory that is watched
gets its own non-recursive watch, so a virtualenv or node_modules costs neither inotify watches
nor stat calls. A directory created later is walked when its creation is seen.

Backends: watchfiles' native events (Rust notify: inotify, FSEvents, kqueue) when it is
installed, else a stat poller here, every POLL_INTERVAL seconds (WATCHFILES_POLL_DELAY_MS sets
it). WATCHFILES_FORCE_POLLING (Docker volumes, WSL, network mounts) selects the poller too, not
watchfiles' own: that one compares modification times in whole seconds, so a second save of a
same-size file within the same second went unseen in our tests; this one compares mtime in
nanoseconds, size and inode. Either way changes are debounced: reported once no further change
came for --reload-delay seconds.

Threading: the watcher is a thread of the supervisor, which forks workers while it runs. The
thread must not hold a lock a forked child could need, so it never logs or writes to stdio
(watchfiles' own logger is raised to WARNING, and its only warning is for the main thread); its
signals are blocked, so they reach the main thread; it hands over its news through a deque
under its own lock (no child uses it) and a callback that appends to a queue and writes a byte
to a pipe.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Optional

from ..config import Config
from ..errors import ConfigError
from . import worker as child

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", "__pycache__", "node_modules", "site-packages", "*~", "#*#", "4913")
ENV_MARKERS = ("pyvenv.cfg", "conda-meta")
POLL_INTERVAL = 0.5  # the fallback poller's period (watchfiles polls every 300 ms)
NATIVE_TIMEOUT_MS = 250  # the native backend looks up this often even when nothing changes
MIN_STEP_MS = 50  # watchfiles wakes up every step: --reload-delay below this means this
MAX_GROUPING = 1.6  # seconds a stream of changes may be grouped into one reload (watchfiles' default)
JOIN_TIMEOUT = 2.0
Snapshot = dict[str, tuple[int, int, int]]


def _normalize(pattern: str) -> str:
    pattern = pattern.strip()
    while pattern.startswith("./"):
        pattern = pattern[2:]
    return pattern.rstrip("/") or pattern


def _match(pattern: str, name: str, rel: str) -> bool:
    if "/" not in pattern:
        return fnmatch.fnmatchcase(name, pattern)
    if pattern.startswith("**/") and _match(pattern[3:], name, rel):
        return True
    return fnmatch.fnmatchcase(rel, pattern)


@dataclass(frozen=True)
class WatchRules:
    roots: tuple[str, ...]
    includes: tuple[str, ...] = DEFAULT_INCLUDES
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
    files: tuple[str, ...] = ()  # watched whatever the globs say (the env file)

    @classmethod
    def from_config(cls, config: Config) -> "WatchRules":
        roots: list[str] = []
        for directory in config.reload_dirs or (".", config.app_dir):
            path = os.path.realpath(directory)
            if path not in roots:
                roots.append(path)
        return cls(
            tuple(roots),
            DEFAULT_INCLUDES + tuple(_normalize(p) for p in config.reload_includes),
            DEFAULT_EXCLUDES + tuple(_normalize(p) for p in config.reload_excludes),
            (os.path.realpath(config.env_file),) if config.env_file else (),
        )

    def root_of(self, path: str) -> Optional[str]:
        """The innermost root holding ``path`` (or None)."""
        best = None
        for root in self.roots:
            if path.startswith(root.rstrip(os.sep) + os.sep) and (best is None or len(root) > len(best)):
                best = root
        return best

    def dir_excluded(self, path: str, name: str, rel: str) -> bool:
        if any(_match(p, name, rel) for p in self.excludes):
            return True
        return any(os.path.lexists(os.path.join(path, marker)) for marker in ENV_MARKERS)

    def file_wanted(self, name: str, rel: str) -> bool:
        """The globs alone, for a file whose directories are already known to be watched."""
        return not any(_match(p, name, rel) for p in self.excludes) and any(
            _match(p, name, rel) for p in self.includes)

    def wanted(self, path: str, is_dir: bool = False) -> bool:
        """Does a change to ``path`` (a file; a directory with ``is_dir``) count? Checks every level."""
        if path in self.files:
            return True
        root = self.root_of(path)
        if root is None:
            return False
        parts = os.path.relpath(path, root).split(os.sep)
        current = root
        for depth, name in enumerate(parts[:-1] if not is_dir else parts):
            current = os.path.join(current, name)
            if self.dir_excluded(current, name, "/".join(parts[:depth + 1])):
                return False
        return is_dir or self.file_wanted(parts[-1], "/".join(parts))

    def walk(self, start: Optional[str] = None) -> Iterator[tuple[str, list[str]]]:
        """(directory, its wanted files) for each directory watched under the roots, or under
        ``start``. Symlinked directories are not followed (no loops); unreadable ones are skipped."""
        seen: set[str] = set()
        for root in ([start] if start else self.roots):
            base = (self.root_of(root) or root) if start else root
            stack = [root]
            while stack:
                directory = stack.pop()
                if directory in seen:
                    continue
                seen.add(directory)
                try:
                    with os.scandir(directory) as it:
                        entries = list(it)
                except OSError:
                    continue
                files = []
                for entry in entries:
                    rel = os.path.relpath(entry.path, base).replace(os.sep, "/")
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if is_dir:
                        if not self.dir_excluded(entry.path, entry.name, rel):
                            stack.append(entry.path)
                    elif self.file_wanted(entry.name, rel):
                        files.append(entry.path)
                yield directory, files

    def snapshot(self) -> Snapshot:
        """Every watched file's (mtime, size, inode): what the poller compares."""
        found: Snapshot = {}
        paths = [f for _, files in self.walk() for f in files] + list(self.files)
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:  # gone between listing and stat: the next round reports it
                continue
            found[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return found


def check_reload_dirs(config: Config) -> None:
    """Preflight: every --reload-dir is a directory (ConfigError, exit 2)."""
    for directory in config.reload_dirs:
        if not os.path.isdir(directory):
            raise ConfigError(f"--reload-dir {directory}: not a directory")


def diff(before: Snapshot, after: Snapshot) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def forced_polling() -> bool:
    """watchfiles' own rule for WATCHFILES_FORCE_POLLING (set and not false/disable(d))."""
    value = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    return bool(value) and value.lower() not in ("false", "disable", "disabled")


def poll_interval() -> float:
    value = os.environ.get("WATCHFILES_POLL_DELAY_MS", "")
    return int(value) / 1000 if value.isdigit() and int(value) > 0 else POLL_INTERVAL


class News(NamedTuple):
    kind: str  # "ready" | "changed" | "problem"
    text: str = ""
    paths: tuple[str, ...] = ()


class Watcher:
    """The watching thread. ``on_news`` is called from it after each ``News`` is queued."""

    def __init__(self, rules: WatchRules, delay: float, on_news: Callable[[], None]) -> None:
        self.rules = rules
        self.delay = delay
        self.on_news = on_news
        self.news: deque[News] = deque()
        self.lock = threading.Lock()
        self.closed = False
        self.stop_event = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.native = False

    # -- the supervisor's side (main thread) -------------------------------------------------
    def start(self) -> Optional[str]:
        """Start watching; returns a note for the log when watchfiles is missing."""
        note = None
        try:
            import watchfiles  # noqa: F401  (imported here, in the main thread, not by the watcher)

            self.native = not forced_polling()
            logging.getLogger("watchfiles").setLevel(logging.WARNING)
        except ImportError:
            note = (f"watchfiles is not installed: polling for changes every {poll_interval():g}s "
                    "(pip install 'asgiserve[reload]' for native file events).")
        self.thread = threading.Thread(target=self._run, name="asgiserve-reload-watcher", daemon=True)
        self.thread.start()
        return note

    def drain(self) -> list[News]:
        with self.lock:
            items = list(self.news)
            self.news.clear()
        return items

    def stop(self) -> None:
        with self.lock:
            self.closed = True  # from here on the thread reports nothing: on_news is never called again
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(JOIN_TIMEOUT)

    # -- the thread --------------------------------------------------------------------------
    def _emit(self, news: News) -> None:
        with self.lock:
            if self.closed:
                return
            self.news.append(news)
            self.on_news()

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, child.SUPERVISOR_SIGNALS)
        try:
            if self.native and self._run_native():
                return
            self._run_polling()
        except Exception as exc:  # reported by the supervisor; the app keeps serving without reloads
            self._emit(News("problem", f"The file watcher stopped ({type(exc).__name__}: {exc}); "
                                       "restart asgiserve to reload again."))

    def _ready(self, backend: str, directories: int) -> None:
        roots = ", ".join(self.rules.roots)
        extra = "".join(f", {os.path.basename(f)}" for f in self.rules.files)
        self._emit(News("ready", f"Watching {roots} for changes to {', '.join(self.rules.includes)}{extra} "
                                 f"({backend}; {directories} director{'y' if directories == 1 else 'ies'})."))

    def _run_native(self) -> bool:
        """Watch with watchfiles until stopped (True), or give up so the poller takes over (False)."""
        from watchfiles import Change, watch

        announced, misses = False, 0
        step = max(MIN_STEP_MS, round(self.delay * 1000))
        while not self.stop_event.is_set():
            directories = [d for d, _ in self.rules.walk()]
            directories += sorted({os.path.dirname(f) for f in self.rules.files} - set(directories))
            rescan = False
            stream = watch(*directories, watch_filter=None, debounce=max(step, int(MAX_GROUPING * 1000)), step=step,
                           stop_event=self.stop_event, rust_timeout=NATIVE_TIMEOUT_MS, yield_on_timeout=True,
                           recursive=False)
            try:
                for changes in stream:
                    misses = 0
                    if not announced:
                        announced = True
                        self._ready("watchfiles", len(directories))
                    paths: set[str] = set()
                    for change, path in changes:
                        if change == Change.added and os.path.isdir(path) and not os.path.islink(path):
                            if self.rules.wanted(path, is_dir=True):  # a new directory: watch it too
                                rescan = True
                                paths.update(f for _, files in self.rules.walk(path) for f in files)
                        elif self.rules.wanted(path):
                            paths.add(path)
                    if paths:
                        self._emit(News("changed", paths=tuple(sorted(paths))))
                    if rescan:
                        break
            except FileNotFoundError:  # a directory went away between the walk and the watch
                misses += 1
                if misses < 5:
                    continue
                self._emit(News("problem", "watchfiles keeps losing directories; polling instead."))
                return False
            except Exception as exc:  # e.g. the inotify watch limit: polling still works
                self._emit(News("problem", f"watchfiles failed ({type(exc).__name__}: {exc}); polling instead."))
                return False
            finally:
                stream.close()  # stops notify's thread and its watches before a rescan makes new ones
            if not rescan:
                return True  # the stop event ended the watch
        return True

    def _run_polling(self) -> None:
        before, interval = self.rules.snapshot(), poll_interval()
        why = ", WATCHFILES_FORCE_POLLING" if forced_polling() else ""
        self._ready(f"polling every {interval:g}s{why}", sum(1 for _ in self.rules.walk()))
        while not self.stop_event.wait(interval):
            current = self.rules.snapshot()
            changed = diff(before, current)
            deadline = time.monotonic() + max(MAX_GROUPING, self.delay)
            while changed and time.monotonic() < deadline and not self.stop_event.wait(self.delay):
                later = self.rules.snapshot()  # group a burst of saves: wait for a quiet --reload-delay
                more = diff(current, later)
                current = later
                if not more:
                    break
                changed |= more
            before = current
            if changed:
                self._emit(News("changed", paths=tuple(sorted(changed))))
