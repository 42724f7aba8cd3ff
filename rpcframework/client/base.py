"""``BaseClient``: the description of one service that every layer of its client reads.

The name is DISET's, where ``BaseClient`` is the base class of ``InnerRPCClient`` and ``TransferClient``. Ours is
held, not inherited: :class:`~rpcframework.client.inner.InnerRPCClient` (under ``RPCClient``),
:class:`~rpcframework.client.transfer.TransferClient` and their asyncio twins each hold one as ``base``. Inheriting
would put its attributes (``timeout``, ``setup``, ``vo``, ``options``...) on ``RPCClient``, where they would shadow
remote methods of the same name, a DISET bug; and the asyncio client shares one description between the
connection pools of several event loops.

DISET's ``BaseClient`` re-discovers URLs, credentials, setup and VO on every connection, from process-global state.
Ours does that work once, when the client is built, and keeps the result; these attributes never change after:

* **where**: the service's URLs (a full URL, a comma list of URLs, or ``System/Component`` resolved through the
  configuration with its failover URLs);
* **as whom**: a user certificate named by ``certLocation``/``keyLocation``, else the proxy (``proxyLocation``,
  ``$X509_USER_PROXY``, ``/tmp/x509up_u<uid>``, then the user certificate) or, with ``useCertificates``, the host
  certificate; the CA directory (``caLocation``, else the configuration and environment); ``skipCACheck``. All of it
  becomes one :class:`~rpcframework.transports.TLSConfig` (``tls``), checked up front so an expired proxy is
  reported as such;
* **how**: the transport back end per scheme (``dip://`` plain TCP; ``dips://`` pyOpenSSL by default, or the
  ``backend`` option), the timeouts (``timeout``) and the retry budget (``retry``);
* **what the proposal says**: setup, VO, the client's own extra credentials, client version and our extensions
  offer.

What changes while the client lives, shared by its calls and safe for concurrent use:

* ``selector``, the :class:`~rpcframework.client.selection.URLSelector`: bans, calls outstanding per URL;
* ``addresses`` and ``endpoints``: a host name is re-resolved when due (:meth:`BaseClient.refresh_addresses`); new
  addresses get an :class:`Endpoint` (bounded), none is removed;
* the proposal cache: :meth:`BaseClient.proposal` builds each (path, method, identity) proposal once and keeps it
  (bounded), so the per-call path does no configuration lookups;
* the back ends, created on first use and shared with the other services of one ``Client``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from rpcframework.client.options import ClientOptions
from rpcframework.client.policy import Retry
from rpcframework.client.resolve import DEFAULT_RESOLVE_INTERVAL, AddressBook, Resolver, split_target
from rpcframework.client.selection import URLSelector
from rpcframework.client.stub import StubRecorder
from rpcframework.config import (
    ConfigStore,
    ConfigTree,
    ServiceURL,
    parse_url,
    read_security_settings,
    resolve_service_urls,
    virtual_organization,
)
from rpcframework.config.settings import SecuritySettings
from rpcframework.errors import ConfigurationError, CredentialsError
from rpcframework.protocol import (
    DelegatedIdentity,
    Extensions,
    ExtraCredentials,
    Feature,
    HostCredentials,
    NoExtraCredentials,
    Proposal,
    ProposalFrames,
)
from rpcframework.security.delegation import current_delegation
from rpcframework.security.locations import (
    check_credentials,
    find_ca_dir,
    find_client_credentials,
    find_host_certificate,
    find_proxy,
    find_user_certificate,
)
from rpcframework.transports import Backend, TLSConfig, get_backend

__all__ = ["DEFAULT_OFFER", "BaseClient", "Endpoint", "client_version"]

logger = logging.getLogger(__name__)

#: What our client offers a server: connection reuse, keyword arguments, pipelining, trace context. ``typed``
#: (lossless encoding) is not offered by default: results would then differ in type (tuples stay tuples) between our
#: servers and DIRAC's.
DEFAULT_OFFER: Final = Extensions(features=frozenset({Feature.REUSE, Feature.KWARGS, Feature.PIPELINE, Feature.TRACE}))

# Targets (URLs and the addresses of their names) ever described; re-resolution adds to these, never beyond.
_MAX_ENDPOINTS: Final = 1024
# Distinct (path, method) proposals kept per client; names built dynamically must not grow memory without bound.
_MAX_CACHED_PROPOSALS: Final = 1024


def client_version() -> str:
    """The fourth proposal element. DIRAC services store it and accept any string (verified on 9.1.22)."""
    from rpcframework._version import __version__

    return f"rpcframework-{__version__}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One URL of the service, parsed once: where to connect, with which back end and TLS settings."""

    url: str
    host: str
    port: int
    path: str
    backend: Backend
    tls: TLSConfig | None
    #: The name the server's certificate must carry, when ``host`` is one of the addresses of that name.
    server_name: str | None = None


def _config_tree(config: object) -> ConfigTree:
    if config is None:
        # Files named by RPCFRAMEWORK_CONFIG/DIRACSYSCONFIG plus environment overrides; read once per service.
        return ConfigStore.from_environment().snapshot()
    if isinstance(config, ConfigTree):
        return config
    if isinstance(config, ConfigStore):
        return config.snapshot()
    raise ConfigurationError(f"config must be a ConfigStore or a ConfigTree, not {type(config).__name__}")


class BaseClient:
    """The description of one service as seen by one client, read by every call (see the module docstring for what
    is fixed when it is built and what changes, thread-safely, while it lives).

    ``backends`` maps back-end names to instances to share (their TLS context caches) between the services of
    one ``Client``; missing ones are created here. ``resolver(host, port) -> addresses`` and ``resolve_interval``
    (seconds) say how host names with several addresses are found and how often again (client/resolve.py).
    """

    def __init__(
        self,
        service: str,
        options: ClientOptions,
        *,
        backends: dict[str, Backend] | None = None,
        offer: Extensions | None = DEFAULT_OFFER,
        environ: Mapping[str, str] | None = None,
        resolver: Resolver | None = None,
        resolve_interval: float = DEFAULT_RESOLVE_INTERVAL,
    ) -> None:
        if not isinstance(service, str) or not service.strip():
            raise ConfigurationError(f"a service must be a URL or 'System/Component', not {service!r}")
        self.service = service
        self.options = options
        self.offer = offer
        #: The encoded proposals of this client's connections: each encoded once, not once per new connection.
        self.proposal_frames = ProposalFrames()
        config = _config_tree(options.config)
        urls = resolve_service_urls(config, service)
        parsed = {url: parse_url(url) for url in urls.all}
        self._urls, self._parsed = urls, parsed
        # A host name with several addresses is several targets (client/resolve.py), each like a URL of its own.
        self.addresses = AddressBook(parsed, resolver=resolver, interval=resolve_interval)
        self.selector = URLSelector(self.addresses.targets(urls.primary), self.addresses.targets(urls.failover))
        self.retry: Retry = options.retries.resolve(len(self.selector.urls))
        self.timeout = options.timeout
        security = read_security_settings(config)
        if options.useCertificates is not None:
            self.use_certificates = options.useCertificates
        else:
            # An explicit user certificate is what the caller asked for; the configuration's host-certificate
            # default does not override it (useCertificates=True with certLocation is refused by ClientOptions).
            self.use_certificates = security.use_server_certificate and options.certLocation is None
        # DIRAC 9 has no setups and its clients send "None" (see the captures); a configured /DIRAC/Setup still wins.
        self.setup = options.setup or config.get_str("/DIRAC/Setup") or "None"
        self.vo = options.VO or virtual_organization(config)
        self._backends = backends if backends is not None else {}
        self._backends_lock = threading.Lock()
        #: Where the trusted CA directory came from, for "unknown CA" errors (set by _build_tls).
        self.ca_hint = "no trusted CA directory"
        self.tls = self._build_tls(security, environ) if any(u.secure for u in parsed.values()) else None
        self.endpoints = {target: self._target_endpoint(target) for target in self.selector.urls}
        self._own_extra = self._own_extra_credentials()
        self._proposals: dict[tuple[str, str, ExtraCredentials], Proposal] = {}
        self._own_proposals: dict[tuple[str, str], Proposal] = {}  # the subset made with _own_extra
        self._version = client_version()

    def __repr__(self) -> str:
        return f"<BaseClient {self.service!r} urls={list(self.endpoints)!r}>"

    # -- credentials -----------------------------------------------------------------------------------------------

    def _build_tls(self, security: SecuritySettings, environ: Mapping[str, str] | None) -> TLSConfig:
        options = self.options
        if self.use_certificates:
            pair = (security.cert_file, security.key_file) if security.cert_file and security.key_file else (None, None)
            creds = find_host_certificate(*pair, environ=environ)
        elif options.certLocation is not None:
            creds = find_user_certificate(options.certLocation, options.keyLocation, environ=environ)
        elif options.proxyLocation is not None:
            creds = find_proxy(options.proxyLocation, environ=environ)
        else:
            creds = find_client_credentials(environ=environ)
        # DISET's sanity pre-flight, once: an expired proxy is reported as such, not as a handshake failure.
        check_credentials(creds.cert_file, None if creds.is_proxy_file else creds.key_file)
        if options.skipCACheck is not None:
            skip_ca = options.skipCACheck
        else:
            skip_ca = security.skip_ca_checks and not self.use_certificates
        ca_dir: str | None
        if options.caLocation is not None:
            ca_dir = str(find_ca_dir(options.caLocation, environ=environ).path)  # explicit: a typo is an error
            self.ca_hint = f"the trusted CA directory is {ca_dir} (from caLocation)"
        else:
            try:
                found = find_ca_dir(security.ca_location, environ=environ)
            except CredentialsError:
                if not skip_ca:
                    raise
                ca_dir = None  # skipCACheck: nothing is verified, so no CA directory is needed
            else:
                ca_dir = str(found.path)
                setting = {"argument": "/DIRAC/Security/CALocation", "default": "the default location"}.get(
                    found.source, found.source
                )
                self.ca_hint = f"the trusted CA directory is {ca_dir} (from {setting})"
        logger.debug("client credentials for %s: %s (%s)", self.service, creds.cert_file, creds.source)
        return TLSConfig(
            cert_file=str(creds.cert_file),
            key_file=None if creds.is_proxy_file else str(creds.key_file),
            ca_dir=ca_dir,
            verify_peer=not skip_ca,
        )

    def _backend(self, name: str) -> Backend:
        with self._backends_lock:
            backend = self._backends.get(name)
            if backend is None:
                backend = self._backends[name] = get_backend(name)
            return backend

    def _target_endpoint(self, target: str) -> Endpoint:
        url, address = split_target(target)
        endpoint = self._endpoint(url, self._parsed[url])
        if address is None:
            return endpoint
        # Connect to the address; the server's certificate must still name the host of the URL.
        return dataclasses.replace(endpoint, url=target, host=address, server_name=endpoint.host)

    def refresh_addresses(self) -> None:
        """Resolve the service's host names again when due, and follow the change (called by each call: cheap)."""
        if not self.addresses.due() or not self.addresses.refresh():
            return
        primary = self.addresses.targets(self._urls.primary)
        failover = self.addresses.targets(self._urls.failover)
        for target in primary + failover:
            if target not in self.endpoints and len(self.endpoints) < _MAX_ENDPOINTS:
                self.endpoints[target] = self._target_endpoint(target)  # a new key: readers never see a half state
        self.selector.replace(primary, failover)

    def _endpoint(self, url: str, spec: ServiceURL) -> Endpoint:
        if not spec.secure:
            return Endpoint(url, spec.host, spec.port, spec.path, self._backend("plain"), None)
        name = self.options.backend or "pyopenssl"
        if name == "plain":
            raise ConfigurationError(f"{url}: backend='plain' cannot speak dips:// (TLS); use a dip:// URL")
        return Endpoint(url, spec.host, spec.port, spec.path, self._backend(name), self.tls)

    # -- proposals -------------------------------------------------------------------------------------------------

    def _own_extra_credentials(self) -> ExtraCredentials:
        """The client's own identity in the proposal, when no ``delegate()`` block is in force."""
        options = self.options
        if options.delegatedDN is not None:
            return DelegatedIdentity(options.delegatedDN, options.delegatedGroup or "")
        if self.use_certificates and options.proxyLocation is None:
            return HostCredentials()  # DISET marks host-certificate calls "hosts" in the proposal
        return NoExtraCredentials()

    def extra_credentials(self) -> ExtraCredentials:
        """The third proposal element for the call being made: the single place a per-call identity enters.

        Explicit ``delegatedDN``/``delegatedGroup`` options win; otherwise an ``rpcframework.security.delegation.
        delegate()`` block (or DISET's ``ThreadConfig``) in force in the calling context makes the call on behalf
        of that user; otherwise the client's own (``""``, or ``"hosts"`` with the host certificate).
        """
        if self.options.delegatedDN is None:
            delegation = current_delegation()
            if delegation is not None:
                return DelegatedIdentity(delegation.dn, delegation.group or "")
        return self._own_extra

    def proposal(self, path: str, method: str) -> Proposal:
        """The RPC proposal for ``method`` on the service at ``path``; cached, so calls reuse one object."""
        if self.options.delegatedDN is None and current_delegation() is None:
            # No per-call identity in force (the common case): extra_credentials() would return _own_extra,
            # so the proposal depends on (path, method) only; a second, smaller key spares the 3-tuple hash.
            proposal = self._own_proposals.get((path, method))
            if proposal is not None:
                return proposal
        extra = self.extra_credentials()
        key = (path, method, extra)
        proposal = self._proposals.get(key)
        if proposal is None:
            proposal = self._build_proposal(path, method, extra)
            if len(self._proposals) < _MAX_CACHED_PROPOSALS:
                self._proposals[key] = proposal
                if extra is self._own_extra:
                    self._own_proposals[(path, method)] = proposal
        return proposal

    def _build_proposal(self, path: str, method: str, extra: ExtraCredentials) -> Proposal:
        return Proposal(
            service=path,
            action_name=method,
            setup=self.setup,
            vo=self.vo,
            extra_credentials=extra,
            client_version=self._version,
        )

    def stub_options(self, timeout: float | None) -> dict[str, Any]:
        """The options recorded in ``rpcStub`` (DISET's client kwargs minus credentials), plus a delegation in
        force, as DISET records ``ThreadConfig``'s identity, so a replay acts for the same user."""
        return StubRecorder().options(self.options, timeout)
