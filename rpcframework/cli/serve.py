"""``rpcframework serve``: run one handler, or the services a configuration describes, until SIGTERM/SIGINT.

Two forms::

    rpcframework serve MODULE:HandlerClass --name System/Component [--port N] ...
    rpcframework serve --config FILE System/Component [System/Component ...]

In the second form each service's handler comes from ``/Systems/<S>/Services/<C>/HandlerPath`` (``module:Class``,
``path/to/file.py:Class``, or DIRAC's ``path/to/ComponentHandler.py`` whose class is ``<Component>Handler``).

The first lines on stdout are the URLs served, one per service, printed only once the sockets listen, so a script
can read them to learn a ``--port 0`` port. Everything else goes to stderr through logging.

``--processes N`` (or ``CloneProcesses`` in the service's section) serves from N forked worker processes sharing
the port (``rpcframework.server.processes``); the URLs are printed once every one of them serves.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from rpcframework.cli.common import add_config_option, add_log_level_option, load_config
from rpcframework.cli.main import EXIT_ERROR, EXIT_OK, SubParsers
from rpcframework.cli.observe import add_observability_options, apply_log_format, start_observability
from rpcframework.config import ConfigStore, parse_system_component, read_security_settings
from rpcframework.config.settings import DEFAULT_MAX_THREADS, service_section
from rpcframework.errors import ConfigurationError
from rpcframework.security.locations import find_ca_dir, find_host_certificate, service_tls
from rpcframework.server import ProcessGroup, RequestHandler, Service, ServiceReactor
from rpcframework.transports.base import TLSConfig

__all__ = ["load_handler", "register"]

logger = logging.getLogger(__name__)

_STOP_POLL = 0.5  # seconds between checks of the stop flag: bounds how late a signal is noticed


def register(subparsers: SubParsers[argparse.ArgumentParser]) -> None:
    """Add ``rpcframework serve``."""
    serve = subparsers.add_parser(
        "serve",
        help="run services until SIGTERM/SIGINT; prints their URLs first",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "targets",
        nargs="+",
        metavar="HANDLER_OR_SERVICE",
        help="MODULE:HandlerClass (with --name), or System/Component names whose HandlerPath is configured",
    )
    serve.add_argument(
        "--name",
        metavar="System/Component",
        help="service name for a MODULE:HandlerClass (required with one; default: none)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port",
        type=_port,
        help="port (0: a free one); with several services they all share it (default: each service's Port)",
    )
    serve.add_argument(
        "--cert",
        type=Path,
        metavar="FILE",
        help="service certificate, with --key (default: /DIRAC/Security/CertFile, then $DIRAC_X509_HOST_CERT, then"
        " hostcert.pem in /etc/grid-security)",
    )
    serve.add_argument(
        "--key", type=Path, metavar="FILE", help="the key of --cert (default: found with the certificate)"
    )
    serve.add_argument(
        "--ca-dir",
        type=Path,
        metavar="DIR",
        help="hashed trusted-CA directory (default: /DIRAC/Security/CALocation, then $X509_CERT_DIR, then"
        " /etc/grid-security/certificates)",
    )
    serve.add_argument(
        "--backend",
        choices=["pyopenssl", "m2crypto", "plain"],
        help="TLS back end (dips://), or plain for dip:// (default: each service's Protocol, pyopenssl for TLS)",
    )
    serve.add_argument(
        "--max-threads",
        type=_positive_int,
        metavar="N",
        help=f"worker threads per service (default: each service's MaxThreads, {DEFAULT_MAX_THREADS} when unset)",
    )
    serve.add_argument(
        "--processes",
        type=_non_negative_int,
        metavar="N",
        help="worker processes sharing the port (0 or 1: this process; default: the services' CloneProcesses)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long running calls may finish (default: %(default)s)",
    )
    add_observability_options(serve)
    add_config_option(serve)
    add_log_level_option(serve)
    serve.set_defaults(handler=_serve)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from exc
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


# -- handler loading --------------------------------------------------------------------------------------------


def load_handler(spec: str, *, component: str | None = None) -> type[RequestHandler]:
    """The ``RequestHandler`` subclass named by ``spec``: ``module:Class`` or ``path/file.py:Class``.

    Without ``:Class`` the class is ``<component>Handler`` (DIRAC's convention for ``HandlerPath``). Every failure
    is a :class:`ConfigurationError` that says what was looked for.
    """
    location, _, class_name = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not class_name:
        if component is None:
            raise ConfigurationError(f"{spec!r}: give the handler as MODULE:HandlerClass")
        class_name = f"{component}Handler"
    if not location:
        raise ConfigurationError(f"{spec!r}: the module part is empty; give MODULE:HandlerClass")
    module = _import_location(location)
    handler = getattr(module, class_name, None)
    if handler is None:
        found = sorted(
            name
            for name, value in vars(module).items()
            if isinstance(value, type) and issubclass(value, RequestHandler) and value is not RequestHandler
        )
        hint = f"; handlers there: {', '.join(found)}" if found else "; it defines no RequestHandler subclass"
        raise ConfigurationError(f"module {module.__name__!r} has no class {class_name!r}{hint}")
    if not (isinstance(handler, type) and issubclass(handler, RequestHandler)):
        raise ConfigurationError(
            f"{module.__name__}.{class_name} is not a RequestHandler subclass "
            "(derive it from rpcframework.server.RequestHandler)"
        )
    return handler


def _import_location(location: str) -> ModuleType:
    path = Path(location)
    if location.endswith(".py") and path.is_file():
        return _import_file(path)
    if location.endswith(".py"):
        if os.sep in location or "/" in location:
            # DIRAC's HandlerPath names a file relative to the Python path; try it as a dotted module.
            return _import_module(location[: -len(".py")].replace("/", "."), shown=location)
        raise ConfigurationError(f"handler file {location} does not exist")
    return _import_module(location, shown=location)


def _import_module(name: str, *, shown: str) -> ModuleType:
    # A console script does not have the working directory on sys.path; `serve mymodule:H` should find ./mymodule.py.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"cannot import handler module {shown!r}: {exc}") from exc
    except ConfigurationError as exc:  # e.g. HandlerDefinitionError raised while the class statement runs
        raise ConfigurationError(f"handler module {shown!r} is invalid: {exc}") from exc
    except Exception as exc:
        raise ConfigurationError(f"importing handler module {shown!r} failed: {type(exc).__name__}: {exc}") from exc


def _import_file(path: Path) -> ModuleType:
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Like running a script: its directory is importable (helper modules next to it) and it is in sys.modules
    # under its name (pickling, dataclasses and typing look it up there).
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ConfigurationError as exc:
        del sys.modules[name]
        raise ConfigurationError(f"handler file {path} is invalid: {exc}") from exc
    except Exception as exc:
        del sys.modules[name]
        raise ConfigurationError(f"loading handler file {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


# -- services ---------------------------------------------------------------------------------------------------


def _services(args: argparse.Namespace, config: ConfigStore) -> list[Service]:
    overrides: dict[str, Any] = {}
    if args.port is not None and len(args.targets) == 1:
        overrides["port"] = args.port
    if args.max_threads is not None:
        overrides["max_threads"] = args.max_threads
    if args.backend is not None:
        overrides["protocol"] = "dip" if args.backend == "plain" else "dips"
    if args.name is not None:
        if len(args.targets) != 1:
            raise ConfigurationError("--name goes with exactly one MODULE:HandlerClass")
        system, component = parse_system_component(args.name)
        handler = load_handler(args.targets[0], component=component)
        return [Service(f"{system}/{component}", handler, config=config, **overrides)]
    services = []
    tree = config.snapshot()
    for name in args.targets:
        if ":" in name or name.endswith(".py"):
            raise ConfigurationError(f"{name!r} looks like a handler: add --name System/Component")
        system, component = parse_system_component(name)
        option = f"{service_section(tree, name)}/HandlerPath"
        spec = tree.get_str(option)
        if not spec:
            raise ConfigurationError(
                f"no handler for {name}: set {option} = module:HandlerClass in the configuration, "
                f"or run `rpcframework serve module:HandlerClass --name {name}`"
            )
        services.append(Service(name, load_handler(spec, component=component), config=config, **overrides))
    return services


def _tls(args: argparse.Namespace, config: ConfigStore) -> TLSConfig | None:
    """Explicit --cert/--key/--ca-dir, else ``/DIRAC/Security``, else the host-certificate and CA lookup."""
    if args.backend == "plain":
        if args.cert or args.key or args.ca_dir:
            raise ConfigurationError("--cert/--key/--ca-dir make no sense with --backend plain (dip://)")
        return None
    if (args.cert is None) != (args.key is None):
        raise ConfigurationError("give --cert and --key together")
    security = read_security_settings(config.snapshot())
    if args.cert is not None:
        cert = find_host_certificate(args.cert, args.key)
    elif security.cert_file or security.key_file:
        cert = find_host_certificate(security.cert_file, security.key_file)
    else:
        cert = find_host_certificate()
    ca_dir = find_ca_dir(args.ca_dir if args.ca_dir is not None else security.ca_location)
    logger.info(
        "service certificate %s (%s); CA directory %s (%s)", cert.cert_file, cert.source, ca_dir.path, ca_dir.source
    )
    return service_tls(cert, ca_dir, security)


def _serve(args: argparse.Namespace) -> int:
    apply_log_format(args)
    config = load_config(args.config)
    services = _services(args, config)
    tls = _tls(args, config) if any(s.protocol == "dips" for s in services) else None
    options: dict[str, Any] = {"host": args.host, "tls": tls}
    if args.backend in ("pyopenssl", "m2crypto"):
        options["backend"] = args.backend
    if args.port is not None and len(services) > 1:
        options["shared_port"] = args.port
    processes = args.processes
    if processes is None:
        processes = max(service.clone_processes for service in services)
    stop = threading.Event()
    started = threading.Event()  # ready = started and not stopping: /readyz turns 503 when the drain begins
    observability = start_observability(
        args, processes=processes, serving=lambda: started.is_set() and not stop.is_set()
    )
    options.update(observability.reactor_options())
    server: ServiceReactor | ProcessGroup
    if processes > 1:
        group_options = observability.group_options()
        server = ProcessGroup(
            services, processes=processes, drain_timeout=args.drain_timeout, **group_options, **options
        )
    else:
        server = ServiceReactor(services, **options)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    # Installed before start(): a signal that arrives between binding and the wait below still stops cleanly.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = EXIT_OK
    try:
        server.start()
        started.set()
        try:
            for service in services:
                print(server.url(service.name), flush=True)
            if observability.endpoint is not None:
                print(f"metrics: {observability.endpoint.url}", flush=True)
            while not stop.wait(_STOP_POLL):
                if isinstance(server, ProcessGroup) and not server.poll():
                    logger.error("no worker process left; stopping")
                    status = EXIT_ERROR
                    break
        finally:
            logger.info("draining (up to %g s)", args.drain_timeout)
            server.stop(timeout=args.drain_timeout)
    finally:
        observability.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
