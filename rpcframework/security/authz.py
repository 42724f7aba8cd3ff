"""Authorization: who is calling (:func:`resolve_caller`) and may they (:func:`authorize`). Deny by default.

Rules are lists of tokens, compared case-insensitively, with DIRAC's AuthManager semantics:

``all`` / ``any``
    anyone, including anonymous callers (a plain ``dip://`` peer, an unknown or suspended DN);
``authenticated``
    any registered user (in a group they belong to, not suspended) or registered host;
``hosts``
    any registered host (a caller using a host certificate);
``group:<g>`` / ``vo:<v>``
    restrict the rule to callers in group ``g`` / in a group of VO ``v`` (several are alternatives);
anything else
    a property (``NormalUser``, ``TrustedHost``...): the caller's group (or host) must have at least one of them.

A caller passes when it satisfies ``all``/``authenticated``/``hosts`` or holds a listed property, **and**, when the
rule lists groups or VOs, is in one of them. A rule holding only ``group:``/``vo:`` tokens admits any registered
caller of those groups, as in DIRAC.

Differences from DIRAC, on purpose: a method with no rule is refused (DIRAC lets everyone in) unless the service
declares a default; the rule lists given to us are never modified (DIRAC's ``getValidGroups`` strips ``group:``
entries out of a handler's class-level ``auth_`` list); refusals say what was required.

Rule lookup (:func:`select_rule`): configuration ``Authorization/<method>``, then the handler's ``auth_<method>``,
then configuration ``Authorization/Default``, then the handler's declared default, else no rule (refused).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rpcframework.config.tree import split_list
from rpcframework.errors import AuthorizationError
from rpcframework.security.extra_credentials import (
    DelegatedIdentity,
    ExtraCredentials,
    HostCredentials,
    NoExtraCredentials,
)
from rpcframework.security.registry import HOSTS_GROUP, Registry

logger = logging.getLogger(__name__)

ANONYMOUS_USERNAME = "anonymous"
VISITOR_GROUP = "visitor"  # DIRAC's group name for callers without a valid identity
UNAUTHORIZED = "Unauthorized query"


class Property(enum.StrEnum):
    """DIRAC's security property names. Rules and registries accept any other string as well."""

    TRUSTED_HOST = "TrustedHost"
    NORMAL_USER = "NormalUser"
    CS_ADMINISTRATOR = "CSAdministrator"
    JOB_SHARING = "JobSharing"
    SERVICE_ADMINISTRATOR = "ServiceAdministrator"
    JOB_ADMINISTRATOR = "JobAdministrator"
    JOB_MONITOR = "JobMonitor"
    ACCOUNTING_MONITOR = "AccountingMonitor"
    GENERIC_PILOT = "GenericPilot"
    SITE_MANAGER = "SiteManager"
    USER_MANAGER = "UserManager"
    OPERATOR = "Operator"
    FULL_DELEGATION = "FullDelegation"
    LIMITED_DELEGATION = "LimitedDelegation"
    PRIVATE_LIMITED_DELEGATION = "PrivateLimitedDelegation"
    PROXY_MANAGEMENT = "ProxyManagement"
    PRODUCTION_MANAGEMENT = "ProductionManagement"
    PRODUCTION_SHARING = "ProductionSharing"
    PRODUCTION_USER = "ProductionUser"
    PPG_AUTHORITY = "PPGAuthority"
    BOOKKEEPING_MANAGEMENT = "BookkeepingManagement"
    FILE_CATALOG_MANAGEMENT = "FileCatalogManagement"
    STAGE_ALLOWED = "StageAllowed"


class AccessDenied(AuthorizationError):
    """Authorization refused; ``str()`` starts with DIRAC's ``"Unauthorized query"``, :attr:`reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{UNAUTHORIZED}: {reason}")
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


# --- the caller ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """The resolved identity of a request (what a handler sees)."""

    dn: str | None
    username: str
    group: str
    properties: tuple[str, ...] = ()
    vo: str | None = None
    is_host: bool = False
    host_name: str | None = None
    delegated_from: str | None = None  # the real peer's DN when a trusted host acts for this user
    anonymous: bool = False
    identity_problem: str | None = None  # why a presented DN gave no identity (for refusals and logs)

    def has_property(self, name: str) -> bool:
        wanted = str(name).lower()
        return any(p.lower() == wanted for p in self.properties)

    def describe(self) -> str:
        """The caller in user terms, for messages."""
        if self.anonymous:
            return f"an anonymous caller ({self.identity_problem})" if self.identity_problem else "an anonymous caller"
        if self.is_host:
            return f"host {self.username}"
        return f"user {self.username} in group {self.group}"

    def to_cred_dict(self) -> dict[str, Any]:
        """DIRAC's credentials dictionary shape (``DN``, ``username``, ``group``, ``properties``...)."""
        creds: dict[str, Any] = {
            "DN": self.dn or "",
            "username": self.username,
            "group": self.group,
            "properties": list(self.properties),
        }
        if self.vo:
            creds["VO"] = self.vo
        if self.delegated_from:
            creds["delegatedFrom"] = self.delegated_from
        return creds


def anonymous_caller(dn: str | None = None, problem: str | None = None, delegated_from: str | None = None) -> Caller:
    """A caller without a usable identity (user ``anonymous``, group ``visitor``); ``problem`` says why."""
    return Caller(
        dn=dn,
        username=ANONYMOUS_USERNAME,
        group=VISITOR_GROUP,
        anonymous=True,
        identity_problem=problem,
        delegated_from=delegated_from,
    )


ExtraCredentialsInput = ExtraCredentials | str | Sequence[str] | None


def _normalise_extra(extra: ExtraCredentialsInput) -> ExtraCredentials | str:
    """The protocol object, or a bare group name (DIRAC's compatibility hack for old clients)."""
    if extra is None or isinstance(extra, (NoExtraCredentials, HostCredentials, DelegatedIdentity)):
        return extra if extra is not None else NoExtraCredentials()
    if isinstance(extra, str):
        if extra == "":
            return NoExtraCredentials()
        return HostCredentials() if extra == HOSTS_GROUP else extra
    items = list(extra)
    if len(items) == 2 and all(isinstance(i, str) for i in items) and items[0]:
        return DelegatedIdentity(items[0], items[1])
    raise AccessDenied("malformed extra credentials (expected '', 'hosts' or [DN, group])")


def _resolve_host(dn: str, registry: Registry) -> Caller:
    host = registry.host_for_dn(dn)
    if host is None:
        return anonymous_caller(dn, f"{dn} is not a registered host")
    return Caller(
        dn=dn,
        username=host.name,
        group=HOSTS_GROUP,
        properties=host.properties,
        is_host=True,
        host_name=host.name,
    )


def _resolve_user(dn: str, group: str | None, registry: Registry) -> Caller:
    user = registry.user_for_dn(dn)
    if user is None:
        if group is None and registry.host_for_dn(dn) is not None:
            # A host certificate without the "hosts" marker (older clients): DIRAC 6 looked hosts up first too.
            return _resolve_host(dn, registry)
        return anonymous_caller(dn, f"{dn} is not registered")
    if group is None:
        group = registry.default_group_for_user(user.name)
        if group is None:
            return anonymous_caller(dn, f"user {user.name} belongs to no group")
    if not registry.is_user_in_group(user.name, group):
        return anonymous_caller(dn, f"user {user.name} is not a member of group {group}")
    vo = registry.vo_for_group(group)
    if user.is_suspended_in(vo):
        where = f" in VO {vo}" if vo and not user.suspended_everywhere else ""
        return anonymous_caller(dn, f"user {user.name} is suspended{where}")
    return Caller(dn=dn, username=user.name, group=group, properties=registry.properties_for_group(group), vo=vo)


def _resolve_identity(dn: str, group: str | None, registry: Registry) -> Caller:
    if group == HOSTS_GROUP:
        return _resolve_host(dn, registry)
    return _resolve_user(dn, group, registry)


def resolve_caller(
    identity_dn: str | None,
    proxy_group: str | None,
    extra_credentials: ExtraCredentialsInput,
    registry: Registry,
) -> Caller:
    """Who is calling: the peer's identity DN, the DIRAC group its verified proxy names (or None), and the
    proposal's extra credentials.

    - ``"hosts"``: the peer is a host; username is its registry name, properties are the host's.
    - ``[dn, group]``: honoured only when the peer is a registered host with ``TrustedHost``; otherwise
      :class:`AccessDenied` is raised at once. A registered user delegated into a group they do not belong to is
      refused the same way. The delegated user is then resolved like a direct caller.
    - A proxy naming a group: that group is the caller's; a group the user is not in is refused
      (:class:`AccessDenied`). Without one, the proposal's bare group (old clients) or the registry's default.
    - An unknown DN, a user outside the requested group (directly, not delegated), or a suspended user gives an
      *anonymous* caller (admitted only by ``all`` rules), with :attr:`Caller.identity_problem` saying why.
    """
    extra = _normalise_extra(extra_credentials)
    if isinstance(extra, DelegatedIdentity):
        peer = registry.host_for_dn(identity_dn) if identity_dn else None
        if peer is None or not any(p.lower() == Property.TRUSTED_HOST.lower() for p in peer.properties):
            who = identity_dn or "an anonymous peer"
            raise AccessDenied(f"delegation refused: {who} is not a host with the TrustedHost property")
        if identity_dn is not None and registry.user_for_dn(identity_dn) is not None:
            # One DN as both user and trusted host: a user certificate (or any proxy of it) would pass as the host.
            raise AccessDenied(f"delegation refused: {identity_dn} is registered as a user as well as a host")
        _refuse_host_target(extra.dn, extra.group, registry)
        _refuse_foreign_group(extra.dn, extra.group, registry)
        delegated = _resolve_identity(extra.dn, extra.group or None, registry)
        logger.debug("host %s acts for %s", peer.name, extra.dn)
        return _with_delegator(delegated, identity_dn)
    if not identity_dn:
        return anonymous_caller(None, "no certificate was presented")
    if isinstance(extra, HostCredentials):
        return _resolve_host(identity_dn, registry)
    requested = extra if isinstance(extra, str) else None
    if proxy_group is not None:
        return _resolve_proxy_group(identity_dn, proxy_group, requested, registry)
    return _resolve_identity(identity_dn, requested, registry)


def _resolve_proxy_group(dn: str, group: str, requested: str | None, registry: Registry) -> Caller:
    """A DIRAC proxy names its group (``dirac-proxy-init -g``): that group is the caller's, as in DIRAC 9.

    The group comes from the verified chain, so it wins over anything in the proposal; a proposal asking for
    another group, or a group the registry does not list for the user, is refused outright (not downgraded to
    anonymous, which ``all`` rules would still admit). Hosts keep their host identity.
    """
    user = registry.user_for_dn(dn)
    if user is None:
        if registry.host_for_dn(dn) is not None:
            return _resolve_host(dn, registry)
        return anonymous_caller(dn, f"{dn} is not registered")
    if requested is not None and requested != group:
        raise AccessDenied(f"{dn} calls with a proxy for group {group} but asks for group {requested}")
    if not registry.is_user_in_group(user.name, group):
        raise AccessDenied(
            f"{dn} is not a member of group {group}, which its proxy names; make a proxy for one of your groups "
            "(rpcframework ca proxy DIR --group G, or dirac-proxy-init -g G)"
        )
    return _resolve_user(dn, group, registry)


def _refuse_host_target(dn: str, group: str, registry: Registry) -> None:
    """A trusted host acts for registered users only, never as another host (which could hold properties the portal
    lacks): the ``hosts`` group, or a DN registered only as a host, is refused outright."""
    if group == HOSTS_GROUP or (registry.host_for_dn(dn) is not None and registry.user_for_dn(dn) is None):
        raise AccessDenied(f"delegation refused: {dn} is a host; a trusted host may act only for registered users")


def _refuse_foreign_group(dn: str, group: str, registry: Registry) -> None:
    """A trusted host may act for a user only in the user's own groups: asking for another one is refused outright
    (not downgraded to anonymous, which ``all`` rules would still admit). Unknown users are left to resolution."""
    if not group or group == HOSTS_GROUP:
        return
    user = registry.user_for_dn(dn)
    if user is not None and not registry.is_user_in_group(user.name, group):
        raise AccessDenied(f"delegation refused: {dn} is not a member of group {group}")


def _with_delegator(caller: Caller, delegator: str | None) -> Caller:
    return dataclasses.replace(caller, delegated_from=delegator)


# --- rules -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthRule:
    """A compiled rule. ``tokens`` keeps the rule as written; the other fields are what it means."""

    tokens: tuple[str, ...]
    allow_all: bool = False
    authenticated: bool = False
    hosts: bool = False
    properties: tuple[str, ...] = ()
    groups: frozenset[str] = frozenset()
    vos: frozenset[str] = frozenset()
    origin: str = ""

    @classmethod
    def parse(cls, rule: str | Iterable[str], origin: str = "") -> AuthRule:
        """Compile ``rule`` (a token list, or a DIRAC comma-separated string); the input is never modified."""
        raw = split_list(rule) if isinstance(rule, str) else tuple(str(t).strip() for t in rule)
        tokens = tuple(t for t in raw if t)
        properties: list[str] = []
        groups: set[str] = set()
        vos: set[str] = set()
        flags: set[str] = set()
        for token in tokens:
            lower = token.lower()
            if lower.startswith("group:"):
                groups.add(token[len("group:") :].strip())
            elif lower.startswith("vo:"):
                vos.add(token[len("vo:") :].strip())
            elif lower in ("all", "any", "authenticated", "hosts"):
                flags.add("all" if lower == "any" else lower)
            elif token not in properties:
                properties.append(token)
        # DIRAC: a rule left with nothing but group:/vo: tokens admits anyone of those groups.
        only_groups = bool(tokens) and not properties and not flags
        return cls(
            tokens=tokens,
            allow_all="all" in flags or only_groups,
            authenticated="authenticated" in flags,
            hosts="hosts" in flags,
            properties=tuple(properties),
            groups=frozenset(groups),
            vos=frozenset(vos),
            origin=origin,
        )

    @property
    def restricts_groups(self) -> bool:
        return bool(self.groups or self.vos)

    def group_allows(self, caller: Caller) -> bool:
        if not self.restricts_groups:
            return True
        if caller.anonymous:
            return False
        return caller.group in self.groups or (caller.vo is not None and caller.vo in self.vos)

    def describe_groups(self) -> str:
        parts = [f"group {g}" for g in sorted(self.groups)] + [f"a group of VO {v}" for v in sorted(self.vos)]
        return " or ".join(parts)


RuleInput = AuthRule | str | Sequence[str] | None


def _as_rule(rule: RuleInput) -> AuthRule | None:
    if rule is None or isinstance(rule, AuthRule):
        return rule
    return AuthRule.parse(rule)


def select_rule(
    method: str,
    *,
    configured: Mapping[str, Sequence[str]] | None = None,
    handler_rule: str | Sequence[str] | None = None,
    handler_default: str | Sequence[str] | None = None,
) -> AuthRule | None:
    """The rule for ``method`` (``"ping"``, or ``"FileTransfer/FromClient"`` for other actions), or None.

    ``configured`` is the service's ``Authorization`` section (:attr:`ServiceSettings.authorization`). Empty lists
    count as unset, as in DIRAC. For ``"<Type>/<name>"`` the configured default is ``"<Type>/Default"``.
    """
    conf = configured or {}
    prefix = method.rpartition("/")[0]
    default_key = f"{prefix}/Default" if prefix else "Default"
    candidates: tuple[tuple[str | Sequence[str] | None, str], ...] = (
        (conf.get(method), f"configuration Authorization/{method}"),
        (handler_rule, f"handler rule for {method}"),
        (conf.get(default_key), f"configuration Authorization/{default_key}"),
        (handler_default, "handler default rule"),
    )
    for tokens, origin in candidates:
        if tokens is None:
            continue
        rule = AuthRule.parse(tokens, origin)
        if rule.tokens:
            return rule
    return None


def authorize(caller: Caller, rule: RuleInput, *, method: str | None = None) -> None:
    """Return when ``caller`` may call under ``rule``; raise :class:`AccessDenied` (an AuthorizationError,
    errno 1111) saying what was required otherwise. ``rule=None`` (or an empty rule) is always refused."""
    what = f"method {method}" if method else "this method"
    try:
        compiled = _as_rule(rule)
    except Exception as exc:  # an uncompilable rule is a refusal, never a crash
        raise AccessDenied(f"{what} has an invalid authorization rule") from exc
    if compiled is None or not compiled.tokens:
        raise AccessDenied(f"{what} has no authorization rule (services deny by default)")
    group_ok = compiled.group_allows(caller)
    if compiled.allow_all and group_ok:
        return
    if caller.anonymous:
        need = f"a registered user or host in {compiled.describe_groups()}" if compiled.restricts_groups else None
        raise AccessDenied(f"{what} requires {need or 'a registered user or host'}; you are {caller.describe()}")
    if group_ok and (compiled.authenticated or (compiled.hosts and caller.is_host)):
        return
    property_ok = any(caller.has_property(p) for p in compiled.properties)
    if property_ok and group_ok:
        return
    if not group_ok:
        raise AccessDenied(f"{what} requires {compiled.describe_groups()}; you are {caller.describe()}")
    alternatives = []
    if compiled.hosts:
        alternatives.append("a registered host")
    if compiled.properties:
        alternatives.append(f"one of the properties {', '.join(compiled.properties)}")
    held = ", ".join(caller.properties) or "no properties"
    raise AccessDenied(f"{what} requires {' or '.join(alternatives)}; {caller.describe()} has {held}")
