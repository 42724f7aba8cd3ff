"""The selector thread never reads configuration files: a watched store reloads on its own thread, builds the
registry there, and swaps the finished snapshot in. Shown with a "slow file system": the loader blocks (an event the
test holds) while calls, on a kept-alive and on a new connection, are served."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from rpcframework import S_OK, Client, RequestHandler, ServiceReactor
from rpcframework.config import ConfigStore
from rpcframework.config import store as store_module
from rpcframework.security.registry import Registry
from rpcframework.server import Service
from rpcframework.transports import TLSConfig

pytestmark = pytest.mark.timeout(60)


class Reader(RequestHandler):
    store: ConfigStore | None = None
    types_motd: list[Any] = []
    auth_motd = ["all"]

    def export_motd(self) -> Any:
        assert self.store is not None
        return S_OK(self.store.snapshot().get("Systems/Test/Services/Reader/Motd", "none"))


def _cfg(motd: str) -> str:
    reader = f"      Reader\n      {{\n        Motd = {motd}\n      }}\n"
    return f"Systems\n{{\n  Test\n  {{\n    Services\n    {{\n{reader}    }}\n  }}\n}}\n"


def test_a_reload_blocked_on_a_slow_file_system_delays_no_call(
    tmp_path: Path, monkeypatch, rpcframework_dev_ca
) -> None:
    """The handler reads the same store (a snapshot, no file access): it sees the new text once the swap is done."""
    cfg = tmp_path / "service.cfg"
    cfg.write_text(_cfg("first"))
    store = ConfigStore([cfg], check_interval=0.05, use_environment=False)
    monkeypatch.setattr(Reader, "store", store)
    real_load = store_module.load_file
    slow = threading.Event()
    entered = threading.Event()
    release = threading.Event()
    loads: list[str] = []
    registries: list[str] = []

    def load_file(path: Any) -> Any:
        loads.append(threading.current_thread().name)
        if slow.is_set():
            entered.set()
            release.wait(30)  # the "disk" answers only when the test says so (bounded)
        return real_load(path)

    real_from_config = Registry.from_config.__func__  # type: ignore[attr-defined]

    def from_config(cls: type[Registry], tree: Any) -> Registry:
        registries.append(threading.current_thread().name)
        return real_from_config(cls, tree)

    monkeypatch.setattr(store_module, "load_file", load_file)
    monkeypatch.setattr(Registry, "from_config", classmethod(from_config))
    ca = rpcframework_dev_ca
    host, user = ca.default_host(), ca.default_user()
    tls = TLSConfig(str(host.cert_file), str(host.key_file), ca_dir=str(ca.cert_dir))
    reactor = ServiceReactor([Service("Test/Reader", Reader, config=store, port=0)], host="127.0.0.1", tls=tls)
    reactor.start()
    try:
        options = {"proxyLocation": str(user.proxy_file), "caLocation": str(ca.cert_dir), "timeout": 20}
        kept = Client(url=reactor.url("Test/Reader"), **options)
        assert kept.motd()["Value"] == "first"
        loads.clear()
        registries.clear()
        slow.set()
        cfg.write_text(_cfg("second"))
        assert entered.wait(20), "the store's thread never started the reload"
        # The reload is stuck in the "file system" now; calls must not wait for it.
        assert kept.motd()["Value"] == "first"
        assert Client(url=reactor.url("Test/Reader"), **options).motd()["Value"] == "first"
        assert not release.is_set() and entered.is_set()
        release.set()
        for _ in range(400):  # the new snapshot arrives once the "disk" answers (bounded)
            if kept.motd()["Value"] == "second":
                break
            entered.wait(0.05)
        assert kept.motd()["Value"] == "second"
    finally:
        release.set()
        reactor.stop(timeout=5)
    assert loads and set(loads) == {"rpc-config-watch"}, loads
    assert registries and set(registries) == {"rpc-config-watch"}, registries
