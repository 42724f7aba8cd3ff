"""What compiling the per-call modules with Cython buys, counted: an experiment, not a build option.

    .venv/bin/python -m benchmarks.compiled_core                      # every variant: instructions + CPU per call
    .venv/bin/python -m benchmarks.compiled_core --variants baseline,protocol --no-callgrind
    RPCFRAMEWORK_CYTHON=/tmp/cy .venv/bin/python -m benchmarks.compiled_core   # Cython from pip install --target

Each variant is a scratch copy of ``rpcframework/`` and ``benchmarks/`` in a temporary directory in which some
modules are compiled by Cython in *pure Python mode* from their unchanged ``.py`` sources (``cython -3``, then the C
compiler into an extension module beside the ``.py``, which the import system then prefers). In that copy it runs
``python -m benchmarks.instructions`` (CPU µs per call, both sides) and, unless ``--no-callgrind``, the same with
``--callgrind`` (instructions per reused ``dips://`` call, client + server in one process), and prints a table.
A ``.pxd`` file beside a module (``--pxd``, see ``PXD``) types its hot class without touching the ``.py``.

The installed package and the source tree are never changed: the copies live in a temporary directory, and every
run checks that the ``rpcframework`` it imports is the copy. Cython is not a dependency of the project: the script
uses the one importable here or in the directory ``RPCFRAMEWORK_CYTHON`` names (``pip install --target DIR
cython``), and skips with a message when there is none or no C compiler. The results and what they mean for issue
20: ``benchmarks/notes/compiled_core.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["VARIANTS", "Measured", "main", "parse_callgrind", "parse_cpu", "table"]

ROOT = Path(__file__).resolve().parent.parent
#: Round trips of the two callgrind runs of the raw floor (their difference cancels start-up and handshake).
_COUNTED = (300, 1500)
#: What the benchmark's calls echo (as ``benchmarks.instructions``).
TEXT = "x" * 100

#: What a reused call runs in the protocol layer (sans-IO machines, decoder, events, messages, JSON codec).
PROTOCOL = (
    "rpcframework/protocol/framing.py",
    "rpcframework/protocol/_connection.py",
    "rpcframework/protocol/rpc.py",
    "rpcframework/protocol/events.py",
    "rpcframework/protocol/messages.py",
    "rpcframework/codec/__init__.py",
    "rpcframework/codec/jsoncodec.py",
)
#: The rest of what one reused call runs per call on each side (cProfile of the benchmark, by file).
PER_CALL = (
    "rpcframework/server/connection.py",
    "rpcframework/server/dispatch.py",
    "rpcframework/server/service.py",
    "rpcframework/server/admission.py",
    "rpcframework/server/limits.py",
    "rpcframework/server/revalidate.py",
    "rpcframework/server/pool.py",
    "rpcframework/server/typecheck.py",
    "rpcframework/server/guard.py",
    "rpcframework/client/inner.py",
    "rpcframework/client/pool.py",
    "rpcframework/client/rpcclient.py",
    "rpcframework/client/stub.py",
    "rpcframework/client/client.py",
    "rpcframework/client/replies.py",
    "rpcframework/client/base.py",
    "rpcframework/client/selection.py",
    "rpcframework/transports/pyopenssl_stream.py",
    "rpcframework/deadline.py",
    "rpcframework/returnvalues.py",
)
VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "protocol": PROTOCOL,
    "protocol+pxd": PROTOCOL,
    "per-call": PROTOCOL + PER_CALL,
    "per-call+pxd": PROTOCOL + PER_CALL,
}
#: Variants that also get the ``.pxd`` files of ``PXD`` beside their modules.
WITH_PXD = frozenset({"protocol+pxd", "per-call+pxd"})
#: Augmenting declarations (Cython reads ``x.pxd`` beside ``x.py``; the ``.py`` stays as it is).
PXD: dict[str, str] = {
    "rpcframework/protocol/framing.py": """\
cdef class FrameDecoder:
    cdef public bytearray _buf
    cdef public Py_ssize_t _pos
    cdef public Py_ssize_t _need
    cdef public bint _keepalive
    cdef public object _error
    cdef public object _inplace
    cdef public Py_ssize_t _filled
    cdef public list _parts
    cdef public Py_ssize_t _parts_len
    cdef public Py_ssize_t _max_frame_size
    cdef public bint last_keepalive
""",
}
#: Cython's directives: the annotations are for mypy, not C types (``list[str]`` must not become an exact check).
DIRECTIVES = ("language_level=3", "annotation_typing=False", "binding=True")


@dataclass(frozen=True, slots=True)
class Measured:
    """One variant's figures (empty or ``None``: not measured). Instruction counts of the whole call vary by a few
    percent between runs (how calls reach the server's threads under valgrind); the client thread's and the
    machines' counts are deterministic."""

    variant: str
    compiled: int
    instructions: list[float]
    client_instructions: float | None
    cpu_us: list[float]
    machine_instructions: float | None = None
    machine_cpu_us: list[float] = field(default_factory=list)


def parse_callgrind(text: str) -> tuple[float, float] | None:
    """(both sides, client) instructions per call from ``benchmarks.instructions --callgrind``'s output."""
    match = re.search(r"client \+ server ([\d,]+); client ([\d,]+)", text)
    if match is None:
        return None
    both, client = (float(group.replace(",", "")) for group in match.groups())
    return both, client


def parse_cpu(text: str) -> list[float]:
    """The runs' CPU µs per call, both sides, from ``benchmarks.instructions``'s output (empty if none)."""
    match = re.search(r"client \+ server ([\d., ]+);", text)
    if match is None:
        return []
    return [float(value) for value in match.group(1).split(",") if value.strip()]


def table(rows: list[Measured]) -> str:
    """A Markdown table of ``rows``; ratios against the first row."""
    lines = [
        "| variant | modules compiled | instructions per call, both sides (runs) | x baseline | client thread "
        "| x baseline | CPU µs per call, both sides (median) | machines alone: instructions per call | x baseline "
        "| machines alone: CPU µs per call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = rows[0] if rows else Measured("", 0, [], None, [])
    for row in rows:
        runs = " / ".join(_num(value) for value in row.instructions) or "—"
        lines.append(
            f"| {row.variant} | {row.compiled} | {runs} "
            f"| {_ratio(_median(row.instructions), _median(base.instructions))} "
            f"| {_num(row.client_instructions)} | {_ratio(row.client_instructions, base.client_instructions)} "
            f"| {_num(_median(row.cpu_us), '.1f')} | {_num(row.machine_instructions)} "
            f"| {_ratio(row.machine_instructions, base.machine_instructions)} "
            f"| {_num(_median(row.machine_cpu_us), '.1f')} |"
        )
    return "\n".join(lines)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _num(value: float | None, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


def _ratio(value: float | None, base: float | None) -> str:
    return "—" if value is None or not base else f"{value / base:.2f}"


def cython_path() -> str | None:
    """A ``sys.path`` entry that makes ``Cython`` importable ("" if it already is), or ``None``."""
    extra = os.environ.get("RPCFRAMEWORK_CYTHON", "")
    for entry in ("", extra) if extra else ("",):
        probe = subprocess.run(
            [sys.executable, "-c", "import Cython"],
            env={**os.environ, "PYTHONPATH": entry} if entry else None,
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return entry
    return None


def compiler() -> str | None:
    """The C compiler to build extensions with (Python's own ``CC`` if it runs), or ``None``."""
    configured = (sysconfig.get_config_var("CC") or "cc").split()[0]
    for name in (configured, "cc", "gcc"):
        if shutil.which(name):
            return name
    return None


def make_copy(dest: Path) -> Path:
    """Copy ``rpcframework/`` and ``benchmarks/`` (sources only) into ``dest``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c", "results")
    for package in ("rpcframework", "benchmarks"):
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    return dest


def compile_modules(copy: Path, modules: tuple[str, ...], cython: str, cc: str, *, pxd: bool) -> list[str]:
    """Compile ``modules`` in ``copy``; return the ones that failed, with the first error line of each."""
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    env = {**os.environ, "PYTHONPATH": cython} if cython else None
    failed = []
    for module in modules:
        source = copy / module
        if pxd and module in PXD:
            source.with_suffix(".pxd").write_text(PXD[module])
        c_file = source.with_suffix(".c")
        directives = [arg for d in DIRECTIVES for arg in ("-X", d)]
        done = subprocess.run(
            [sys.executable, "-m", "cython", *directives, "-o", str(c_file), str(source)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            target = source.with_name(source.stem + suffix)
            done = subprocess.run(
                [cc, "-shared", "-fPIC", "-O2", "-w", f"-I{include}", str(c_file), "-o", str(target)],
                capture_output=True,
                text=True,
                check=False,
            )
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if line.strip()), "?")
            failed.append(f"{module}: {first.strip()[:200]}")
    return failed


def check_imports(copy: Path, modules: tuple[str, ...]) -> None:
    """Raise unless the copy's ``rpcframework`` is the one imported there, with ``modules`` as extensions."""
    names = [module.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for module in modules]
    code = (
        "import importlib, sys\n"
        "import rpcframework\n"
        f"assert rpcframework.__file__.startswith({str(copy)!r}), rpcframework.__file__\n"
        f"for name in {names!r}:\n"
        "    path = importlib.import_module(name).__file__\n"
        "    assert path.endswith('.so'), path\n"
    )
    env = {**os.environ, "PYTHONPATH": str(copy)}
    done = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the copy in {copy} is not what imports: {done.stderr[-1000:]}")


def raw_calls(ca: Path, counts: list[int], warmup: int = 200) -> list[tuple[int, float]]:
    """The floor in the same harness: ``benchmarks.raw_tls_echo``'s pyOpenSSL echo (rpcframework's own stream, no
    RPC layer), server on a thread of this process; process CPU of each of ``counts`` round trips in a row."""
    import socket
    import threading

    from benchmarks.raw_tls_echo import MESSAGE, read_exactly, serve
    from rpcframework.transports.base import TLSConfig, get_backend

    listener = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(target=serve, args=("pyopenssl", ca, listener), daemon=True)
    server.start()
    tls = TLSConfig(cert_file=str(ca / "proxy.pem"), ca_dir=str(ca / "certificates"))
    stream = get_backend("pyopenssl").connect(
        "127.0.0.1", listener.getsockname()[1], tls=tls, server_hostname="localhost"
    )
    out = []
    try:
        for count in [warmup, *counts]:
            start = time.process_time()
            for _ in range(count):
                stream.send_all(MESSAGE)
                if read_exactly(stream.recv, len(MESSAGE)) != MESSAGE:
                    raise RuntimeError("echo mismatch")
            out.append((count, time.process_time() - start))
    finally:
        stream.close()
        server.join(10)
        listener.close()
    return out[1:]


def machine_calls(counts: list[int], warmup: int = 200) -> list[tuple[int, float]]:
    """The protocol core alone: pipelined echo calls through a ``ClientConnection`` and a ``ServerConnection``
    fed each other's bytes in this thread (no socket, no TLS, no thread), as the client and the worker drive them
    on a reused connection; process CPU of each of ``counts`` calls in a row."""
    from rpcframework.protocol import (
        ArgumentsReceived,
        CallResult,
        ClientConnection,
        Extensions,
        Feature,
        Proposal,
        ProposalAccepted,
        ProposalReceived,
        ServerConnection,
    )
    from rpcframework.returnvalues import S_OK

    offer = Extensions(features=frozenset({Feature.REUSE, Feature.KWARGS, Feature.PIPELINE}))
    client, server = ClientConnection(offer=offer), ServerConnection(extensions=Extensions(features=frozenset(Feature)))
    echo = Proposal(service="Bench/Echo", action_name="echo", client_version="bench")
    server.receive_data(client.send_proposal(echo))
    server.next_event()
    client.receive_data(server.accept())
    if not isinstance(client.next_event(), ProposalAccepted):
        raise RuntimeError("the machines did not negotiate")
    server.receive_data(client.send_arguments([TEXT]))
    server.next_event()
    client.receive_data(server.send_result(S_OK(TEXT)))
    client.next_event()
    out = []
    for count in [warmup, *counts]:
        start = time.process_time()
        for _ in range(count):
            server.receive_data(client.send_call(echo, [TEXT]))
            if not isinstance(server.next_event(), ProposalReceived) or server.accept():
                raise RuntimeError("the pipelined proposal was not received")
            arguments = server.next_event()
            if not isinstance(arguments, ArgumentsReceived):
                raise RuntimeError(f"expected the arguments, got {arguments!r}")
            client.receive_data(server.send_result(S_OK(arguments.args[0])))
            result = client.next_event()
            if not isinstance(result, CallResult) or result.result.get("Value") != TEXT:
                raise RuntimeError(f"echo mismatch: {result!r}")
        out.append((count, time.process_time() - start))
    return out[1:]


def _machines_child(counts: list[int]) -> None:
    cpu = sorted(1e6 * seconds / count for count, seconds in machine_calls(counts))
    print(f"machines: CPU µs per call, runs sorted: client + server {', '.join(f'{v:.1f}' for v in cpu)};")


def _raw_child(ca: Path, counts: list[int]) -> None:
    cpu = sorted(1e6 * seconds / count for count, seconds in raw_calls(ca, counts))
    print(f"raw pyopenssl echo: CPU µs per call, runs sorted: client + server {', '.join(f'{v:.1f}' for v in cpu)};")


def raw_floor(ca: Path, scratch: Path, *, callgrind: bool) -> Measured:
    """The raw pyOpenSSL echo's figures, measured like the variants (child processes of the source tree)."""
    child = ["-m", "benchmarks.compiled_core", "--ca", str(ca), "--raw-child"]
    cpu = parse_cpu(_python(ROOT, [*child, "2000,2000,2000,2000,2000"]))
    counted = _callgrind(ROOT, scratch / "raw", lambda calls: [*child, str(calls)]) if callgrind else None
    return Measured("raw pyOpenSSL echo (floor)", 0, [counted] if counted else [], None, cpu)


def parse_callgrind_total(text: str) -> int:
    """The instruction total of a callgrind output file (every thread)."""
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no summary line in the callgrind output")
    return int(match.group(1))


def _python(tree: Path, args: list[str]) -> str:
    """``python args`` in ``tree`` with that tree's ``rpcframework`` first on the path; its standard output."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("RPCFRAMEWORK_QUIET", None)
    done = subprocess.run(
        [sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=3600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed in {tree}: {done.stderr[-2000:]}")
    return done.stdout


def _callgrind(tree: Path, out: Path, args_for: Callable[[int], list[str]]) -> float:
    """Instructions per call: two runs of ``python args_for(calls)`` under callgrind, the difference of their
    totals divided by the difference of their calls (start-up, imports and the handshake cancel out)."""
    totals = []
    for calls in _COUNTED:
        target = out.with_name(f"{out.name}.{calls}.callgrind")
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={target}", sys.executable, *args_for(calls)]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run(command, cwd=tree, env=env, capture_output=True, timeout=3600, check=True)
        totals.append(parse_callgrind_total(target.read_text()))
    return (totals[1] - totals[0]) / (_COUNTED[1] - _COUNTED[0])


def measure(name: str, copy: Path, ca: Path, *, callgrind: bool, modules: tuple[str, ...], repeat: int) -> Measured:
    """A variant's figures in its copy: the whole call (``benchmarks.instructions``) and the machines alone."""
    bench = ["-m", "benchmarks.instructions", "--ca", str(ca)]
    cpu = parse_cpu(_python(copy, bench))
    machines = ["-m", "benchmarks.compiled_core", "--machines-child"]
    machine_cpu = parse_cpu(_python(copy, [*machines, "20000,20000,20000,20000,20000"]))
    counted = [parse_callgrind(_python(copy, [*bench, "--callgrind"])) for _ in range(repeat if callgrind else 0)]
    found = [pair for pair in counted if pair is not None]
    machine_instructions = None
    if callgrind:
        machine_instructions = _callgrind(copy, copy / "machines", lambda calls: [*machines, str(calls * 10)]) / 10
    return Measured(
        variant=name,
        compiled=len(modules),
        instructions=[both for both, _ in found],
        client_instructions=_median([client for _, client in found]),
        cpu_us=cpu,
        machine_instructions=machine_instructions,
        machine_cpu_us=machine_cpu,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--no-callgrind", action="store_true", help="CPU µs per call only (no valgrind)")
    parser.add_argument("--keep", type=Path, help="build the copies here and keep them (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=2, help="callgrind runs of the whole call per variant")
    parser.add_argument("--no-raw", action="store_true", help="do not measure the raw pyOpenSSL echo floor")
    parser.add_argument("--ca", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--raw-child", help=argparse.SUPPRESS)
    parser.add_argument("--machines-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.machines_child:
        _machines_child([int(n) for n in args.machines_child.split(",")])
        return 0
    if args.raw_child:
        _raw_child(args.ca, [int(n) for n in args.raw_child.split(",")])
        return 0
    names = [name for name in args.variants.split(",") if name]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose among {list(VARIANTS)}")
    cython, cc = cython_path(), compiler()
    if cython is None or cc is None:
        missing = (
            "Cython (pip install --target DIR cython; RPCFRAMEWORK_CYTHON=DIR)" if cython is None else "a C compiler"
        )
        print(f"skipped: {missing} is not available; nothing was built or measured")
        return 0
    callgrind = not args.no_callgrind
    if callgrind and shutil.which("valgrind") is None:
        print("valgrind is not installed: CPU µs per call only")
        callgrind = False
    with tempfile.TemporaryDirectory(prefix="rpcframework-compiled-") as scratch_name:
        scratch = args.keep or Path(scratch_name)
        scratch.mkdir(parents=True, exist_ok=True)
        from rpcframework.security.devca import DevCA

        ca = scratch / "ca"
        if not ca.exists():
            DevCA.init(ca)
        rows = []
        for name in names:
            modules = VARIANTS[name]
            copy = scratch / name.replace("+", "_")
            if copy.exists():
                shutil.rmtree(copy)
            make_copy(copy)
            failed = compile_modules(copy, modules, cython, cc, pxd=name in WITH_PXD)
            for line in failed:
                print(f"{name}: not compiled: {line}")
            built = tuple(module for module in modules if not any(line.startswith(module) for line in failed))
            check_imports(copy, built)
            rows.append(measure(name, copy, ca, callgrind=callgrind, modules=built, repeat=args.repeat))
            print(f"{name}: {len(built)} modules compiled; {rows[-1]}", flush=True)
        if not args.no_raw:
            rows.append(raw_floor(ca, scratch, callgrind=callgrind))
            print(f"raw floor: {rows[-1]}", flush=True)
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
