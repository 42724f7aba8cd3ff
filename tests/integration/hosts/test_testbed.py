"""The test bed itself: three service hosts reachable from the client host, and faults that behave like real ones."""

from __future__ import annotations

import json

import pytest

from benchmarks.hosts_scenarios import Load, run_load, split
from benchmarks.netns import ADDRESSES, HOSTS, PORT, TestBed

pytestmark = pytest.mark.timeout(90)

# Connects once to ADDRESS:PORT from inside the client host; prints "connected", "refused" or "silent".
_PROBE = """
import socket, sys
sock = socket.socket()
sock.settimeout(float(sys.argv[3]))
try:
    sock.connect((sys.argv[1], int(sys.argv[2])))
except TimeoutError:
    print("silent")
except ConnectionRefusedError:
    print("refused")
else:
    print("connected")
"""


def _probe(bed: TestBed, host: str, timeout: float = 1.0) -> str:
    done = bed.run_client("-c", _PROBE, ADDRESSES[host], str(PORT), str(timeout), timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_client_in_its_host_reaches_three_service_hosts(bed: TestBed) -> None:
    for host in HOSTS:
        bed.start(host)
    data, _ = run_load(bed, [bed.url(host) for host in HOSTS], Load(threads=4, duration=1.0), [])
    (phase,) = split(data["calls"], [("all", data["started"], data["ended"])])
    assert phase.calls > 0
    assert phase.failed == 0, phase.reasons
    assert set(phase.hosts) == set(HOSTS)


def test_faults_look_like_real_outages(bed: TestBed) -> None:
    instance = bed.start("h1")
    assert _probe(bed, "h1") == "connected"
    bed.link("h1", up=False)
    assert _probe(bed, "h1") == "silent"  # packets vanish: no reset, no "unreachable"
    bed.link("h1", up=True)
    assert _probe(bed, "h1") == "connected"
    instance.kill()
    assert _probe(bed, "h1") == "refused"  # a dead process: the kernel answers with a reset at once
    assert _probe(bed, "h2") == "refused"  # nothing started there


def test_names_resolve_only_inside_the_client_host(bed: TestBed) -> None:
    script = "import json, socket; print(json.dumps(sorted({a[4][0] for a in socket.getaddrinfo('svc', 1)})))"
    done = bed.run_client("-c", script, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == sorted(ADDRESSES[host] for host in HOSTS)
