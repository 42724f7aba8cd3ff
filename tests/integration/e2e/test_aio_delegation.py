"""Delegation per task: a portal's asyncio client acts for two users at once, with no leak between its tasks.

The portal holds the host certificate (registered with ``TrustedHost``); each task sets ``delegate(dn=...)`` around
its calls. The identity lives in a context variable, which every task copies when it is created, and the proposal
of each call is built from the variable of the task that makes it, whichever pooled connection carries it."""

from __future__ import annotations

import asyncio

import pytest
from support.e2e_kit import ALICE_DN, SERVICE, CountingHandler

import rpcframework
from rpcframework.client.aio import AsyncClient

pytestmark = pytest.mark.timeout(120)

TASKS = 64
CALLS = 10_000


def portal_client(creds, url: str) -> AsyncClient:
    return AsyncClient(url, useCertificates=True, config=creds.config(), timeout=30)


def test_64_tasks_alternating_users_over_10000_calls_see_only_their_own_user(creds, cluster):
    (reactor,) = cluster(max_threads=8)
    users = [(ALICE_DN, "alice"), (creds.user.dn, "dev-user")]
    per_task = -(-CALLS // TASKS)  # 157 each: 10,048 calls in all
    seen: dict[int, list[str]] = {}

    async def work(client: AsyncClient, task: int) -> None:
        dn, _ = users[task % 2]
        names: list[str] = []
        with rpcframework.delegate(dn, "demo_users"):
            for _ in range(per_task):
                result = await client.served_by()
                assert result["OK"], result
                names.append(result["Value"]["user"])
                await asyncio.sleep(0)  # let the other tasks interleave between calls too
        seen[task] = names

    async def main() -> str:
        async with portal_client(creds, reactor.url(SERVICE)) as client:
            await asyncio.gather(*(work(client, task) for task in range(TASKS)))
            own = await client.whoami()  # outside every block: the portal itself
            return str(own["Value"]["username"])

    assert asyncio.run(main()) == "localhost"
    for task, names in seen.items():
        expected = users[task % 2][1]
        assert names == [expected] * per_task, (task, expected, sorted(set(names)))
    assert len(seen) == TASKS
    assert CountingHandler.executions["served_by"] == TASKS * per_task >= CALLS


def test_a_delegation_does_not_outlive_its_block_nor_reach_a_task_started_before(creds, cluster):
    (reactor,) = cluster()

    async def main() -> tuple[str, str, str]:
        async with portal_client(creds, reactor.url(SERVICE)) as client:
            started = asyncio.Event()
            release = asyncio.Event()

            async def bystander() -> str:
                started.set()
                await release.wait()
                return str((await client.served_by())["Value"]["user"])

            other = asyncio.create_task(bystander())
            await started.wait()
            with rpcframework.delegate(ALICE_DN, "demo_users"):
                inside = str((await client.served_by())["Value"]["user"])
                release.set()
                outside_task = await other
            after = str((await client.served_by())["Value"]["user"])
            return inside, outside_task, after

    assert asyncio.run(main()) == ("alice", "localhost", "localhost")
