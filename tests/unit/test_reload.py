"""--reload without processes: the watch rules on a temporary tree, the poller's comparison, and
the ReloadSupervisor's decisions with fake workers (the real processes: tests/integration/test_reload.py).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from asgiserve.config import Config
from asgiserve.errors import ConfigError
from asgiserve.workers.process import Worker
from asgiserve.workers.reload import RELOAD_EVENT, ReloadSupervisor, describe, purge_bytecode
from asgiserve.workers.watch import News, WatchRules, diff

EXIT_3 = 3 << 8


def rules(root: Path, **options: object) -> WatchRules:
    options.setdefault("reload_dirs", (str(root),))
    return WatchRules.from_config(Config(app="x:app", reload=True, **options))  # type: ignore[arg-type]


def tree(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")


@pytest.mark.parametrize("path, wanted", [
    ("app.py", True), ("pkg/sub/models.py", True), ("README.md", False), ("pkg/.hidden.py", False),
    (".venv/lib/x.py", False), ("node_modules/a/b.py", False), ("pkg/__pycache__/m.py", False),
    ("lib/site-packages/m.py", False), (".git/hooks/h.py", False), ("app.py~", False), ("#app.py#", False),
    ("myenv/lib/m.py", False),  # myenv holds pyvenv.cfg: a virtualenv under another name
    ("conda/lib/m.py", False),  # conda holds conda-meta
])
def test_default_rules(tmp_path: Path, path: str, wanted: bool) -> None:
    tree(tmp_path, "myenv/pyvenv.cfg", "conda/conda-meta/history")
    r = rules(tmp_path)
    assert r.wanted(str(tmp_path / path)) is wanted


def test_globs_with_and_without_a_slash(tmp_path: Path) -> None:
    r = rules(tmp_path, reload_includes=("*.html", "config/*.toml"), reload_excludes=("tests/fixtures/", "draft_*"))
    w = lambda p: r.wanted(str(tmp_path / p))  # noqa: E731
    assert w("templates/a/page.html")  # no slash: the name, at any depth
    assert w("config/app.toml") and w("config/deep/app.toml")  # with a slash: the relative path; * crosses /
    assert not w("other/config/app.toml") and not w("app.toml")
    assert not w("tests/fixtures/case.py") and w("tests/test_app.py")  # a directory pattern excludes below it
    assert not w("draft_page.html") and not w("draft_pkg/mod.py")  # exclusions win, for files and directories
    r2 = rules(tmp_path, reload_includes=("**/*.txt",))
    assert r2.wanted(str(tmp_path / "a.txt")) and r2.wanted(str(tmp_path / "d/a.txt"))  # **/ may match nothing


def test_exclusions_apply_below_a_root_only(tmp_path: Path) -> None:
    tree(tmp_path, ".venv/pyvenv.cfg", ".venv/lib/mylib/mod.py", "app.py")
    r = rules(tmp_path, reload_dirs=(str(tmp_path), str(tmp_path / ".venv/lib/mylib")))
    assert r.wanted(str(tmp_path / ".venv/lib/mylib/mod.py"))  # an explicit --reload-dir inside a virtualenv
    assert not r.wanted(str(tmp_path / ".venv/lib/other.py"))
    assert sorted(f for _, files in r.walk() for f in files) == [
        str(tmp_path / ".venv/lib/mylib/mod.py"), str(tmp_path / "app.py")]


def test_walk_prunes_excluded_directories(tmp_path: Path) -> None:
    tree(tmp_path, "app.py", "pkg/m.py", "pkg/data.json", ".venv/pyvenv.cfg", ".venv/lib/a/b/c.py", "node_modules/x/y.py",
         "env/pyvenv.cfg", "env/lib/z.py", "pkg/__pycache__/m.cpython-311.pyc")
    walked = dict(rules(tmp_path).walk())
    assert sorted(walked) == [str(tmp_path), str(tmp_path / "pkg")]
    assert walked[str(tmp_path / "pkg")] == [str(tmp_path / "pkg/m.py")]


def test_env_file_is_always_watched(tmp_path: Path) -> None:
    tree(tmp_path, "conf/.env")
    r = rules(tmp_path / "src", env_file=str(tmp_path / "conf/.env"))
    assert r.wanted(os.path.realpath(tmp_path / "conf/.env"))
    assert os.path.realpath(tmp_path / "conf/.env") in r.snapshot()


def test_poller_sees_a_same_size_edit_within_the_second(tmp_path: Path) -> None:
    tree(tmp_path, "app.py")
    r = rules(tmp_path)
    (tmp_path / "app.py").write_text("V = 1\n")
    before = r.snapshot()
    (tmp_path / "app.py").write_text("V = 2\n")
    st = os.stat(tmp_path / "app.py")
    os.utime(tmp_path / "app.py", ns=(st.st_atime_ns, before[str(tmp_path / "app.py")][0] + 1))
    assert diff(before, r.snapshot()) == {str(tmp_path / "app.py")}
    (tmp_path / "new.py").write_text("")
    (tmp_path / "app.py").unlink()
    assert diff(before, r.snapshot()) == {str(tmp_path / "app.py"), str(tmp_path / "new.py")}


def test_config_rules() -> None:
    assert Config(app="x:app", reload=True).supervised
    with pytest.raises(ConfigError, match="--preload"):
        Config(app="x:app", reload=True, preload=True)
    with pytest.raises(ConfigError, match="import string"):
        Config(app=lambda: None, reload=True)
    with pytest.raises(ConfigError, match="--reload-delay"):
        Config(app="x:app", reload_delay=-1)


def test_describe_and_purge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = tuple(str(tmp_path / f"m{i}.py") for i in range(7))
    assert describe(paths[:2]) == "m0.py, m1.py"
    assert describe(paths) == "m0.py, m1.py, m2.py, m3.py, m4.py and 2 more"
    assert describe(("/elsewhere/x.py",)) == "/elsewhere/x.py"
    import importlib.util
    import py_compile

    (tmp_path / "m0.py").write_text("x = 1\n")
    cached = importlib.util.cache_from_source(str(tmp_path / "m0.py"))
    py_compile.compile(str(tmp_path / "m0.py"), cfile=cached)
    purge_bytecode((str(tmp_path / "m0.py"), str(tmp_path / "gone.py"), str(tmp_path / "x.html")))
    assert not os.path.exists(cached)


# -- the supervisor's decisions ---------------------------------------------------------------
class FakeReload(ReloadSupervisor):
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

    def fail(self, pid: int, message: str = "SyntaxError", traceback: str = "") -> None:
        self.workers[pid].error = {"message": message, "traceback": traceback}
        self.on_worker_exit(self.workers.pop(pid), EXIT_3)

    def serve_all(self) -> None:
        for w in self.workers.values():
            if not w.stopping:
                self.on_message(w, b"R")

    def change(self, *paths: str) -> None:
        self.watcher.news.append(News("changed", paths=paths))
        self.dispatch(RELOAD_EVENT)


def make(workers: int = 2) -> FakeReload:
    return FakeReload(Config(app="x:app", workers=workers, reload=True))


def test_boot_failure_with_nothing_serving_waits_for_a_change(capsys: pytest.CaptureFixture[str]) -> None:
    s = make(2)
    s.manage_workers()
    first, second = list(s.workers)
    s.fail(first, traceback="Traceback: boom\n")
    assert s.stopping is None and s.halt_reason is None
    assert s.sent == [(second, signal.SIGTERM)]  # the rest of the broken generation is stopped
    s.fail(second, traceback="Traceback: boom\n")
    s.manage_workers()
    assert s.workers == {}  # no respawn loop of code that cannot start
    assert capsys.readouterr().err.count("Traceback: boom") == 1
    s.change("/p/app.py")
    s.manage_workers()
    assert len(s.workers) == 2 and s.generation == 1
    s.serve_all()
    s.manage_workers()
    assert s.announced


def test_each_broken_change_shows_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """Generations are never reused after a failed reload, so the second broken save's
    traceback is not taken for the first one's."""
    s = make(1)
    s.manage_workers()
    s.serve_all()
    s.manage_workers()
    for n in (1, 2):
        s.change("/p/app.py")
        s.manage_workers()
        new = max(s.workers)
        s.fail(new, traceback=f"Traceback: error {n}\n")
        assert s.generation == 0  # the old worker keeps serving
    err = capsys.readouterr().err
    assert "error 1" in err and "error 2" in err
    s.change("/p/app.py")
    s.manage_workers()
    assert s.generation == 3


def test_a_change_resets_the_crash_backoff() -> None:
    s = make(1)
    s.manage_workers()
    for _ in range(4):
        s._record_crash()
    assert s.next_spawn_at > 0
    s.change("/p/app.py")
    assert s.next_spawn_at == 0.0 and not s.crashes


@pytest.mark.parametrize("options, reloads, ignores", [  # the README's table of examples, row by row
    ({}, ["main.py", "shop/models.py"], ["README.md", ".venv/lib/x.py", "env/lib/x.py", "node_modules/a/x.py",
                                          "shop/__pycache__/x.py"]),
    ({"reload_includes": ("*.html", "*.toml")}, ["templates/base.html", "config/app.toml"], ["static/app.css"]),
    ({"reload_includes": ("templates/*",)}, ["templates/base.html", "templates/a/b.txt"],
     ["static/app.css", "docs/templates/x.html"]),
    ({"reload_excludes": ("tests",)}, ["shop/views.py"], ["tests/test_views.py", "shop/tests/conftest.py"]),
    ({"reload_excludes": ("tests/fixtures",)}, ["tests/test_views.py"], ["tests/fixtures/big.py"]),
    ({"reload_excludes": ("*_pb2.py",)}, ["shop/api.py"], ["shop/api_pb2.py"]),
    ({"reload_dirs": ("src", "lib")}, ["src/app.py", "lib/util.py"], ["main.py"]),
    ({"reload_excludes": ("*.py",), "reload_includes": ("*.html",)}, ["a/b.html"], ["main.py"]),
])
def test_readme_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, object],
                         reloads: list[str], ignores: list[str]) -> None:
    tree(tmp_path, "env/pyvenv.cfg", "src/.keep", "lib/.keep")
    monkeypatch.chdir(tmp_path)
    r = WatchRules.from_config(Config(app="x:app", reload=True, **options))  # type: ignore[arg-type]
    root = os.path.realpath(tmp_path)
    assert [p for p in reloads if not r.wanted(os.path.join(root, p))] == []
    assert [p for p in ignores if r.wanted(os.path.join(root, p))] == []
