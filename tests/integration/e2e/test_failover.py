"""Several URLs: a server stopped mid-call, a server gone before the call, every URL down. At most once, always.

The primary URL is listed under ``URLs`` and the other two under ``FailoverURLs``: primaries are tried in random
order but failover URLs last and in order, so "the first of three URLs" is deterministic.
"""

from __future__ import annotations

import threading
import time

from support.e2e_kit import SERVICE, CountingHandler, dead_urls, urls_of
from support.waiting import wait_for

from examples.echo.client import EchoClient
from rpcframework.client import Retry
from rpcframework.returnvalues import DReturn


def ordered_client(creds, urls: list[str]) -> EchoClient:
    """An ``EchoClient`` resolving ``Demo/Echo`` from a configuration: ``urls[0]`` first, then the others in order."""
    return EchoClient(config=creds.ordered_config(urls), proxyLocation=str(creds.user.proxy_file), timeout=10)


def test_server_stopped_while_the_first_url_runs_the_call(creds, cluster):
    reactors = cluster(3)
    first, *others = urls_of(reactors)
    with ordered_client(creds, urls_of(reactors)) as client:
        box: dict[str, DReturn] = {}
        caller = threading.Thread(target=lambda: box.update(result=client.slow(1.0)), daemon=True)
        caller.start()
        wait_for(lambda: CountingHandler.executions["slow"] == 1)
        reactors[0].stop(timeout=0.2)  # shorter than the call: stop does not wait for it
        caller.join(timeout=10)
        assert "result" in box
        result = box["result"]
        # Either the call finished on the stopping server (drained), or the caller is told clearly; never rerun.
        assert result["OK"] or first in result["Message"], result
        assert CountingHandler.executed_on == [("slow", first)]
        # The next call fails over to the second URL, in order.
        after = client.served_by()
        assert after["OK"] and after["Value"]["url"] == others[0], after
    assert CountingHandler.executions["slow"] == 1


def test_server_gone_before_the_arguments_were_sent_fails_over_once(creds, cluster):
    reactors = cluster(3)
    first, second, _ = urls_of(reactors)
    with ordered_client(creds, urls_of(reactors)) as client:
        assert client.served_by()["Value"]["url"] == first  # leaves a pooled connection to the first server
        reactors[0].stop(timeout=1)  # its pooled connection dies and its port refuses connections
        result = client.slow(0.1)
        assert result["OK"] and result["Value"]["served_by"] == second, result
    assert [entry for entry in CountingHandler.executed_on if entry[0] == "slow"] == [("slow", second)]


def test_every_url_down_names_each_url(creds):
    urls = dead_urls(3)
    # DISET's budget (two rounds over three URLs), with short pauses: the default backoff sums to ~8 s here.
    quick = Retry(backoff_factor=0.05, backoff_jitter=0.05)
    started = time.monotonic()
    with creds.client(urls, timeout=15, retries=quick) as client:
        result = client.echo("anyone?")
    # The quick backoff is honoured (about 0.5 s in all; the default one sums to ~8 s): generous for a shared machine.
    assert time.monotonic() - started < 5
    assert not result["OK"], result
    assert "every attempt failed (6 attempts)" in result["Message"]
    for url in urls:
        assert url in result["Message"], (url, result["Message"])
    assert "refused" in result["Message"].lower()


def test_failover_spreads_then_avoids_a_dead_primary(creds, cluster):
    reactors = cluster(2)
    with creds.client(urls_of(reactors)) as client:
        served = {client.served_by()["Value"]["url"] for _ in range(30)}
        assert served == set(urls_of(reactors))  # random primaries: both serve (1 in 2**29 to fail)
        reactors[1].stop(timeout=1)
        after = [client.served_by() for _ in range(10)]
    assert all(r["OK"] and r["Value"]["url"] == reactors[0].url(SERVICE) for r in after), after
