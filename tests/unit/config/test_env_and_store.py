"""Environment overrides, config file discovery and reload on file change."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from support.clock import FakeClock

from rpcframework.config import (
    ConfigStore,
    ConfigTree,
    SourceKind,
    ValueSource,
    config_files_from_env,
    env_overrides,
    load_sources,
)
from rpcframework.errors import ConfigurationError


def _write(path: Path, text: str, bump: int = 0) -> None:
    path.write_text(text)
    if bump:
        # Guarantee a different mtime even on coarse-grained file systems.
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_per_option_env_variables() -> None:
    env = {
        "RPCFRAMEWORK_CFG__Systems__DataManagement__URLs__Dispatcher": "dips://h:9135/DataManagement/Dispatcher",
        "RPCFRAMEWORK_CFG__DIRAC__Setup": "Prod",
        "UNRELATED": "x",
    }
    tree = env_overrides(env)
    assert tree.get("/Systems/DataManagement/URLs/Dispatcher") == "dips://h:9135/DataManagement/Dispatcher"
    assert tree.get("/DIRAC/Setup") == "Prod"
    assert tree.option("/DIRAC/Setup").source == ValueSource(  # type: ignore[union-attr]
        SourceKind.ENV, "RPCFRAMEWORK_CFG__DIRAC__Setup"
    )
    assert tree.sections() == ("DIRAC", "Systems")


def test_json_env_then_per_option_variables_win() -> None:
    env = {
        "RPCFRAMEWORK_CFG_JSON": json.dumps(
            {"DIRAC": {"Setup": "FromJson", "VirtualOrganization": "vo"}, "R": {"L": ["a", "b"]}}
        ),
        "RPCFRAMEWORK_CFG__DIRAC__Setup": "FromVar",
    }
    tree = env_overrides(env)
    assert tree.get("/DIRAC/Setup") == "FromVar"
    assert tree.get("/DIRAC/VirtualOrganization") == "vo"
    assert tree.get_list("/R/L") == ("a", "b")
    assert tree.option("/DIRAC/VirtualOrganization").source.location == "RPCFRAMEWORK_CFG_JSON"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RPCFRAMEWORK_CFG_JSON": "{nope"}, "invalid JSON"),
        ({"RPCFRAMEWORK_CFG_JSON": "[1, 2]"}, "expected a JSON object"),
        ({"RPCFRAMEWORK_CFG__DIRAC____Setup": "x"}, "empty path segment"),
        ({"RPCFRAMEWORK_CFG__": "x"}, "empty path segment"),
    ],
)
def test_bad_env_overrides(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        env_overrides(env)


def test_config_files_from_env_order() -> None:
    assert config_files_from_env({"RPCFRAMEWORK_CONFIG": "a.cfg, b.toml", "DIRACSYSCONFIG": "c.cfg"}) == (
        "a.cfg",
        "b.toml",
    )
    assert config_files_from_env({"DIRACSYSCONFIG": "c.cfg,d.cfg"}) == ("c.cfg", "d.cfg")
    assert config_files_from_env({"RPCFRAMEWORK_CONFIG": " ", "DIRACSYSCONFIG": "c.cfg"}) == ("c.cfg",)
    assert config_files_from_env({}) == ()


def test_load_sources_lookup_order(tmp_path: Path) -> None:
    a = tmp_path / "a.cfg"
    b = tmp_path / "b.toml"
    _write(a, "DIRAC\n{\n  Setup = A\n  VirtualOrganization = A\n  Hostname = a\n}\n")
    _write(b, '[DIRAC]\nSetup = "B"\nVirtualOrganization = "B"\n')
    tree = load_sources([a, b], {"RPCFRAMEWORK_CFG__DIRAC__Setup": "ENV"})
    assert tree.get("/DIRAC/Setup") == "ENV"
    assert tree.get("/DIRAC/VirtualOrganization") == "B"
    assert tree.get("/DIRAC/Hostname") == "a"


def test_store_from_environment(tmp_path: Path) -> None:
    a = tmp_path / "a.cfg"
    _write(a, "DIRAC\n{\n  Setup = A\n}\n")
    store = ConfigStore.from_environment(
        environ={"DIRACSYSCONFIG": str(a), "RPCFRAMEWORK_CFG__DIRAC__VirtualOrganization": "vo"}
    )
    assert store.files == (str(a),)
    snap = store.snapshot()
    assert (snap.get("/DIRAC/Setup"), snap.get("/DIRAC/VirtualOrganization")) == ("A", "vo")


def test_store_defaults_are_lowest(tmp_path: Path) -> None:
    a = tmp_path / "a.cfg"
    _write(a, "DIRAC\n{\n  Setup = A\n}\n")
    store = ConfigStore([a], defaults={"DIRAC": {"Setup": "D", "VirtualOrganization": "dvo"}}, environ={})
    assert store.snapshot().get("/DIRAC/Setup") == "A"
    assert store.snapshot().get("/DIRAC/VirtualOrganization") == "dvo"


def test_store_ignores_environment_when_asked(tmp_path: Path) -> None:
    store = ConfigStore([], environ={"RPCFRAMEWORK_CFG__DIRAC__Setup": "x"}, use_environment=False)
    assert store.snapshot().get("/DIRAC/Setup") is None


def test_reload_on_file_change(tmp_path: Path) -> None:
    path = tmp_path / "live.cfg"
    _write(path, "Registry\n{\n  BannedIPs = 192.0.2.1\n}\n")
    clock = FakeClock(0.0)
    store = ConfigStore([path], environ={}, check_interval=5.0, clock=clock)
    seen: list[ConfigTree] = []
    store.subscribe(seen.append)
    first = store.snapshot()
    assert first.get_list("/Registry/BannedIPs") == ("192.0.2.1",)

    _write(path, "Registry\n{\n  BannedIPs = 192.0.2.1, 192.0.2.2\n}\n", bump=1)
    assert store.snapshot() is first  # not yet: the check interval has not passed
    clock.now = 5.0
    second = store.snapshot()
    assert second is not first
    assert second.get_list("/Registry/BannedIPs") == ("192.0.2.1", "192.0.2.2")
    assert seen == [second]
    assert first.get_list("/Registry/BannedIPs") == ("192.0.2.1",)  # old snapshots never change

    clock.now = 10.0
    assert store.snapshot() is second  # unchanged file: no reload
    assert store.refresh() is False


def test_broken_reload_keeps_previous_snapshot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "live.toml"
    _write(path, '[DIRAC]\nSetup = "A"\n')
    store = ConfigStore([path], environ={}, check_interval=0.0)
    good = store.snapshot()
    _write(path, "[DIRAC\n", bump=1)
    assert store.refresh() is False
    assert store.snapshot() is good
    assert store.last_error is not None and "cannot parse TOML" in str(store.last_error)
    assert "keeping the previous settings" in caplog.text
    _write(path, '[DIRAC]\nSetup = "B"\n', bump=2)
    assert store.snapshot().get("/DIRAC/Setup") == "B"
    assert store.last_error is None


def test_deleted_file_keeps_previous_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "live.cfg"
    _write(path, "DIRAC\n{\n  Setup = A\n}\n")
    store = ConfigStore([path], environ={}, check_interval=0.0)
    path.unlink()
    assert store.snapshot().get("/DIRAC/Setup") == "A"
    assert store.last_error is not None


def test_first_load_must_succeed(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        ConfigStore([tmp_path / "missing.cfg"], environ={})


def test_force_refresh_and_failing_listener(tmp_path: Path) -> None:
    path = tmp_path / "a.cfg"
    _write(path, "A\n{\n  B = 1\n}\n")
    store = ConfigStore([path], environ={})

    def boom(_tree: ConfigTree) -> None:
        raise RuntimeError("listener bug")

    store.subscribe(boom)
    assert store.refresh(force=True) is True  # a failing listener does not break the swap


def test_cfg_with_a_duplicated_section_never_escapes_the_reload(tmp_path: Path) -> None:
    # diraccfg raises KeyError for a section opened twice; a live reload must keep the old tree, not crash.
    path = tmp_path / "live.cfg"
    _write(path, "Registry\n{\n  BannedIPs = 192.0.2.1\n}\n")
    clock = FakeClock(0.0)
    store = ConfigStore([path], environ={}, check_interval=1.0, clock=clock)
    first = store.snapshot()
    _write(path, "Registry\n{\n  A = 1\n}\nRegistry\n{\n  B = 2\n}\n", bump=1)
    clock.now = 2.0
    assert store.snapshot() is first
    assert store.last_error is not None
    assert "live.cfg:5: 'Registry' is defined twice in this section" in str(store.last_error)


def test_concurrent_snapshots_during_reloads(tmp_path: Path) -> None:
    path = tmp_path / "a.cfg"
    _write(path, "A\n{\n  B = 0\n}\n")
    store = ConfigStore([path], environ={}, check_interval=0.0)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(200):
                assert store.snapshot().get("/A/B") is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(1, 20):
        _write(path, f"A\n{{\n  B = {i}\n}}\n", bump=i)
        store.refresh()
    for t in threads:
        t.join()
    assert not errors
    assert store.snapshot().get("/A/B") == "19"
