"""Client-side delegated identity: context-local, nestable, isolated across threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from rpcframework.errors import ConfigurationError
from rpcframework.security.delegation import Delegation, ThreadConfig, current_delegation, delegate

ALICE = "/DC=org/DC=example/CN=Alice"
BOB = "/DC=org/DC=example/CN=Bob"


def test_delegate_sets_and_restores() -> None:
    assert current_delegation() is None
    with delegate(ALICE, "users") as active:
        assert active == Delegation(ALICE, "users")
        assert current_delegation() == active
        with delegate(BOB):
            assert current_delegation() == Delegation(BOB, None)
        assert current_delegation() == active
    assert current_delegation() is None


def test_delegate_restores_after_an_exception() -> None:
    with pytest.raises(RuntimeError), delegate(ALICE):
        raise RuntimeError("boom")
    assert current_delegation() is None


@pytest.mark.parametrize("dn", ["", "CN=Alice", None, 5])
def test_bad_dn_is_refused(dn: object) -> None:
    with pytest.raises(ConfigurationError, match="grid DN"):
        Delegation(dn)  # type: ignore[arg-type]


def test_thread_config_facade_shares_the_variable() -> None:
    config = ThreadConfig()
    ctx = contextvars.copy_context()

    def body() -> None:
        with pytest.raises(ConfigurationError, match="setDN"):
            config.setGroup("users")
        config.setDN(ALICE)
        config.setGroup("users")
        assert current_delegation() == Delegation(ALICE, "users")
        assert config.getID() == (ALICE, "users")
        config.reset()
        assert config.getDN() is None

    ctx.run(body)
    assert current_delegation() is None


def test_threads_never_see_each_others_identity() -> None:
    seen: list[bool] = []
    barrier = threading.Barrier(32, timeout=10)

    def worker(i: int) -> None:
        dn = f"/DC=org/DC=example/CN=user{i}"
        barrier.wait()  # all 32 threads alternate identities at the same time
        for n in range(200):
            with delegate(dn, f"g{i}-{n % 2}"):
                seen.append(current_delegation() == Delegation(dn, f"g{i}-{n % 2}"))
            seen.append(current_delegation() is None)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(seen) == 32 * 200 * 2
    assert all(seen)


def test_asyncio_tasks_are_isolated() -> None:
    async def one(i: int) -> bool:
        dn = f"/DC=org/DC=example/CN=task{i}"
        ok = True
        for _ in range(50):
            with delegate(dn):
                await asyncio.sleep(0)
                ok = ok and current_delegation() == Delegation(dn)
        return ok

    async def main() -> list[bool]:
        return await asyncio.gather(*(one(i) for i in range(32)))

    assert all(asyncio.run(main()))
