"""Client options (DISET names) validated once into a frozen :class:`ClientOptions`, and per-call settings.

Unknown option names are an error that names the valid ones: DISET silently drops what it does not know, which
turns a typo such as ``delegatedGrop=`` into a call made with the wrong identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from rpcframework.client.policy import Retry, Timeout, check_seconds
from rpcframework.errors import ConfigurationError

if TYPE_CHECKING:
    from rpcframework.client.interfaces import CallTarget
    from rpcframework.observability.events import ClientObserver

#: Keywords that DIRAC code passes to ``Client`` methods as per-call settings, never to the remote method.
CALL_SETTING_NAMES = ("url", "timeout", "rpc")


class UnknownOptionError(ConfigurationError, TypeError):
    """An option name the client does not know. Also a ``TypeError``, like any unexpected keyword argument."""


_STRING_OPTIONS = (
    "proxyLocation",
    "certLocation",
    "keyLocation",
    "caLocation",
    "delegatedDN",
    "delegatedGroup",
    "setup",
    "VO",
    "backend",
)


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """Everything a client is configured with, validated once. Names follow DISET where DISET has the option.

    ``None`` means "not set: use the configuration or the library default" (for example ``useCertificates=None``
    lets ``/DIRAC/Security/UseServerCertificate`` decide).

    ``certLocation``/``keyLocation`` (a user certificate and its key, instead of a proxy) and ``caLocation`` (the
    hashed trusted-CA directory) have no DISET keyword: DISET reads them from ``$X509_USER_CERT``/``_KEY`` and
    ``/DIRAC/Security/CALocation``. They are named after DISET's ``proxyLocation`` and the CS ``CALocation``.
    """

    timeout: Timeout = field(default_factory=Timeout)
    proxyLocation: str | None = None
    certLocation: str | None = None
    keyLocation: str | None = None
    caLocation: str | None = None
    useCertificates: bool | None = None
    delegatedDN: str | None = None
    delegatedGroup: str | None = None
    skipCACheck: bool | None = None
    setup: str | None = None
    VO: str | None = None
    retries: Retry = field(default_factory=Retry)
    backend: str | None = None
    config: object | None = None
    #: Told about every call (metrics, tracing): see :mod:`rpcframework.observability`. Not a DISET option.
    observer: ClientObserver | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.timeout, Timeout):
            raise ConfigurationError(f"timeout must be a Timeout, not {self.timeout!r} (use ClientOptions.build)")
        if not isinstance(self.retries, Retry):
            raise ConfigurationError(f"retries must be a Retry, not {self.retries!r} (use ClientOptions.build)")
        for name in _STRING_OPTIONS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"{name} must be a non-empty string, not {value!r}")
        for name in ("useCertificates", "skipCACheck"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ConfigurationError(f"{name} must be True, False or None, not {value!r}")
        if self.observer is not None and not callable(getattr(self.observer, "call_finished", None)):
            raise ConfigurationError(f"observer must be a ClientObserver, not {type(self.observer).__name__}")
        if self.delegatedGroup is not None and self.delegatedDN is None:
            raise ConfigurationError("delegatedGroup needs delegatedDN: a group alone names nobody")
        self._check_user_certificate()

    def _check_user_certificate(self) -> None:
        # certLocation/keyLocation name a user certificate; a half pair, or a pair next to another explicit
        # credential, would leave the client guessing which one to present.
        if (self.certLocation is None) != (self.keyLocation is None):
            raise ConfigurationError("certLocation and keyLocation go together: give both or neither")
        if self.certLocation is None:
            return
        if self.proxyLocation is not None:
            raise ConfigurationError("give either proxyLocation or certLocation/keyLocation, not both")
        if self.useCertificates:
            raise ConfigurationError(
                "useCertificates=True means the host certificate; certLocation/keyLocation name a user certificate:"
                " give one or the other"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def build(cls, options: Mapping[str, Any]) -> ClientOptions:
        """Validate keyword options (as passed to ``Client(...)``); legacy forms like ``timeout=120`` accepted."""
        valid = cls.names()
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise UnknownOptionError(
                f"unknown client option(s) {', '.join(unknown)}; valid options are: {', '.join(valid)}"
            )
        values = dict(options)
        if "timeout" in values:
            values["timeout"] = Timeout.from_value(values["timeout"])
        if "retries" in values:
            values["retries"] = Retry.from_value(values["retries"])
        return cls(**values)

    def stub_options(self, timeout: float | None) -> dict[str, Any]:
        """The options that travel in an ``rpcStub`` (DISET keeps the client's kwargs there).

        Like DISET we leave out ``useCertificates``: whoever replays a stub decides which credentials to use.
        For the same reason we also leave out ``proxyLocation``, ``certLocation``, ``keyLocation``, ``caLocation``
        and ``skipCACheck`` (local files and a local trust decision), and local plumbing (``backend``, ``retries``,
        ``config``, ``observer``). Only plain values remain, so the stub survives DEncode and JSON.
        """
        stub: dict[str, Any] = {"timeout": timeout if timeout is not None else self.timeout.total}
        for name in ("setup", "VO", "delegatedDN", "delegatedGroup"):
            value = getattr(self, name)
            if value is not None:
                stub[name] = value
        return stub


@dataclass(frozen=True)
class CallSettings:
    """Per-call settings: a different service (``url``), a deadline (``timeout``, seconds), a target (``rpc``)."""

    url: str | None = None
    timeout: float | None = None
    rpc: CallTarget | None = None

    def __post_init__(self) -> None:
        if self.url is not None and (not isinstance(self.url, str) or not self.url):
            raise ConfigurationError(f"url must be a non-empty string, not {self.url!r}")
        check_seconds("timeout", self.timeout)
        if self.rpc is not None and not callable(getattr(self.rpc, "call", None)):
            raise ConfigurationError(f"rpc must be a CallTarget with a call() method, not {type(self.rpc).__name__}")

    def merged(self, override: CallSettings) -> CallSettings:
        """These settings with every value ``override`` sets taking precedence."""
        return CallSettings(
            url=override.url if override.url is not None else self.url,
            timeout=override.timeout if override.timeout is not None else self.timeout,
            rpc=override.rpc if override.rpc is not None else self.rpc,
        )


def split_call_settings(kwargs: Mapping[str, Any]) -> tuple[CallSettings, dict[str, Any]]:
    """Separate DIRAC's per-call settings (``url``, ``timeout``, ``rpc``) from remote keyword arguments.

    DIRAC passes ``url=""`` and ``timeout=None`` for "the default", so empty values mean "not set".
    """
    if not kwargs:
        return _NO_SETTINGS, {}  # the common call: nothing to split, no settings object to build
    remote = {name: value for name, value in kwargs.items() if name not in CALL_SETTING_NAMES}
    url = kwargs.get("url") or None
    timeout = kwargs.get("timeout")
    if isinstance(timeout, Timeout):
        timeout = timeout.total
    rpc = kwargs.get("rpc")
    return CallSettings(url=url, timeout=timeout, rpc=rpc), remote


_NO_SETTINGS = CallSettings()
