"""Authorization: identity resolution, DIRAC AuthManager semantics, deny by default, delegation, rule lookup."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpcframework.config import load_cfg_text, read_service_settings
from rpcframework.errors import AuthorizationError
from rpcframework.protocol.messages import DelegatedIdentity, HostCredentials, NoExtraCredentials
from rpcframework.returnvalues import ENOAUTH
from rpcframework.security.authz import (
    AccessDenied,
    AuthRule,
    Caller,
    Property,
    authorize,
    resolve_caller,
    select_rule,
)
from rpcframework.security.registry import Registry

# The same shape of registry as DIRAC's Test_AuthManager: a normal user, a user of a group without the needed
# property, a user suspended in one VO but active in another, a trusted host and an untrusted one.
CFG = """
Registry
{
  Users
  {
    ann
    {
      DN = /DC=org/DC=test/CN=ann
    }
    ben
    {
      DN = /DC=org/DC=test/CN=ben
    }
    sue
    {
      DN = /DC=org/DC=test/CN=sue
      Suspended = alpha
    }
  }
  Hosts
  {
    portal.test.org
    {
      DN = /DC=org/DC=test/CN=portal.test.org
      Properties = TrustedHost
    }
    worker.test.org
    {
      DN = /DC=org/DC=test/CN=worker.test.org
      Properties = NotTrusted
    }
  }
  Groups
  {
    alpha_user
    {
      Users = ann, sue
      VO = alpha
      Properties = NormalUser
    }
    beta_user
    {
      Users = sue
      VO = beta
      Properties = NormalUser
    }
    gamma_bad
    {
      Users = ben
      VO = gamma
      Properties = NoProperties
    }
  }
}
Systems
{
  Test
  {
    Services
    {
      Svc
      {
        Authorization
        {
          Method = NormalUser
          MethodAll = Any
          MethodAuth = Authenticated
          MethodGroup = NormalUser, group:alpha_user
          MethodGroupOther = NormalUser, group:beta_user
          MethodAllGroup = Any, group:alpha_user
          MethodAllGroupOther = Any, group:beta_user
          MethodAuthGroup = Authenticated, group:alpha_user
          MethodAuthGroupOther = Authenticated, group:beta_user
          MethodVO = NormalUser, vo:alpha
          MethodAllVO = Any, vo:alpha
          MethodAuthVO = Authenticated, vo:alpha
          MethodHost = group:hosts
          MethodTrustedHost = TrustedHost, group:hosts
        }
      }
    }
  }
}
"""

ANN = "/DC=org/DC=test/CN=ann"
BEN = "/DC=org/DC=test/CN=ben"
SUE = "/DC=org/DC=test/CN=sue"
PORTAL = "/DC=org/DC=test/CN=portal.test.org"
WORKER = "/DC=org/DC=test/CN=worker.test.org"

# name -> (identity DN, proxy group, extra credentials)
IDENTITIES: dict[str, tuple[str | None, str | None, object]] = {
    "user": (ANN, "alpha_user", ""),
    "no_dn": (None, "alpha_user", ""),
    "bad_user": (BEN, "gamma_bad", ""),
    "suspended": (SUE, "alpha_user", ""),
    "suspended_other_vo": (SUE, "beta_user", ""),
    "host": (PORTAL, None, "hosts"),
    "bad_host": (WORKER, None, "hosts"),
}

# method -> the identities DIRAC lets in (every other identity is refused)
MATRIX: dict[str, set[str]] = {
    "MethodAll": {"user", "no_dn", "bad_user", "suspended", "suspended_other_vo", "host", "bad_host"},
    "MethodAuth": {"user", "bad_user", "suspended_other_vo", "host", "bad_host"},
    "Method": {"user", "suspended_other_vo"},
    "MethodAllGroup": {"user"},
    "MethodAllGroupOther": {"suspended_other_vo"},
    "MethodAuthGroup": {"user"},
    "MethodAuthGroupOther": {"suspended_other_vo"},
    "MethodGroup": {"user"},
    "MethodGroupOther": {"suspended_other_vo"},
    "MethodAllVO": {"user"},
    "MethodAuthVO": {"user"},
    "MethodVO": {"user"},
    "MethodHost": {"host", "bad_host"},
    "MethodTrustedHost": {"host"},
}


@pytest.fixture(scope="module")
def config():  # type: ignore[no-untyped-def]
    return load_cfg_text(CFG, "authz.cfg")


@pytest.fixture(scope="module")
def registry(config) -> Registry:  # type: ignore[no-untyped-def]
    return Registry.from_config(config)


@pytest.fixture(scope="module")
def rules(config) -> dict[str, tuple[str, ...]]:  # type: ignore[no-untyped-def]
    return dict(read_service_settings(config, "Test/Svc").authorization)


def _caller(registry: Registry, name: str) -> Caller:
    dn, group, extra = IDENTITIES[name]
    return resolve_caller(dn, group, extra, registry)  # type: ignore[arg-type]


def _allowed(caller: Caller, rule: object) -> bool:
    try:
        authorize(caller, rule)  # type: ignore[arg-type]
    except AuthorizationError:
        return False
    return True


@pytest.mark.parametrize("method", sorted(MATRIX))
@pytest.mark.parametrize("identity", sorted(IDENTITIES))
def test_dirac_auth_manager_matrix(
    registry: Registry, rules: dict[str, tuple[str, ...]], method: str, identity: str
) -> None:
    expected = identity in MATRIX[method]
    assert _allowed(_caller(registry, identity), rules[method]) is expected


def test_resolved_identities(registry: Registry) -> None:
    user = _caller(registry, "user")
    assert (user.username, user.group, user.properties, user.vo, user.anonymous) == (
        "ann",
        "alpha_user",
        ("NormalUser",),
        "alpha",
        False,
    )
    host = _caller(registry, "host")
    assert (host.username, host.group, host.is_host, host.host_name, host.properties) == (
        "portal.test.org",
        "hosts",
        True,
        "portal.test.org",
        ("TrustedHost",),
    )
    suspended = _caller(registry, "suspended")
    assert suspended.anonymous and suspended.dn == SUE
    assert suspended.identity_problem == "user sue is suspended in VO alpha"
    assert suspended.username == "anonymous" and suspended.group == "visitor"
    assert _caller(registry, "no_dn").identity_problem == "no certificate was presented"


def test_default_group_when_proxy_has_none(registry: Registry) -> None:
    caller = resolve_caller(ANN, None, "", registry)
    assert caller.group == "alpha_user" and not caller.anonymous


def test_wrong_group_and_unknown_dn_are_anonymous(registry: Registry) -> None:
    wrong = resolve_caller(ANN, None, "beta_user", registry)  # a bare group in the proposal (old clients)
    assert wrong.anonymous and wrong.identity_problem == "user ann is not a member of group beta_user"
    with pytest.raises(AccessDenied, match="not a member of group beta_user, which its proxy names"):
        resolve_caller(ANN, "beta_user", "", registry)  # a group inside the verified proxy: refused outright
    unknown = resolve_caller("/CN=stranger", None, "", registry)
    assert unknown.anonymous and unknown.identity_problem == "/CN=stranger is not registered"
    fake_host = resolve_caller("/CN=stranger", None, "hosts", registry)
    assert fake_host.anonymous and "not a registered host" in (fake_host.identity_problem or "")


def test_protocol_objects_and_wire_forms_are_equivalent(registry: Registry) -> None:
    assert resolve_caller(PORTAL, None, HostCredentials(), registry) == resolve_caller(PORTAL, None, "hosts", registry)
    assert resolve_caller(ANN, "alpha_user", NoExtraCredentials(), registry) == resolve_caller(
        ANN, "alpha_user", None, registry
    )
    assert resolve_caller(PORTAL, None, DelegatedIdentity(ANN, "alpha_user"), registry) == resolve_caller(
        PORTAL, None, [ANN, "alpha_user"], registry
    )


def test_host_certificate_without_hosts_marker(registry: Registry) -> None:
    caller = resolve_caller(PORTAL, None, "", registry)
    assert caller.is_host and caller.username == "portal.test.org"


def test_bare_group_in_extra_credentials_is_dirac_compat(registry: Registry) -> None:
    caller = resolve_caller(SUE, None, "beta_user", registry)
    assert caller.group == "beta_user" and not caller.anonymous


# --- delegation ------------------------------------------------------------------------------------------------


def test_delegation_by_trusted_host(registry: Registry) -> None:
    caller = resolve_caller(PORTAL, None, (ANN, "alpha_user"), registry)
    assert (caller.dn, caller.username, caller.group, caller.delegated_from) == (ANN, "ann", "alpha_user", PORTAL)
    assert caller.properties == ("NormalUser",) and not caller.is_host
    authorize(caller, ["NormalUser"])
    with pytest.raises(AccessDenied):
        authorize(caller, ["TrustedHost"])  # the host's own properties do not leak to the user


@pytest.mark.parametrize(
    "peer",
    [WORKER, ANN, "/CN=unknown", None],
)
def test_delegation_refused_for_untrusted_peers(registry: Registry, peer: str | None) -> None:
    with pytest.raises(AuthorizationError, match=r"delegation refused: .* is not a host with the TrustedHost property"):
        resolve_caller(peer, None, [ANN, "alpha_user"], registry)


def test_delegation_refusal_names_the_peer(registry: Registry) -> None:
    with pytest.raises(AccessDenied) as info:
        resolve_caller(WORKER, None, [ANN, "alpha_user"], registry)
    assert info.value.reason == f"delegation refused: {WORKER} is not a host with the TrustedHost property"
    assert info.value.errno == ENOAUTH


def test_delegated_group_the_user_is_not_in_is_refused(registry: Registry) -> None:
    with pytest.raises(AccessDenied) as info:
        resolve_caller(PORTAL, None, [ANN, "beta_user"], registry)
    assert info.value.reason == f"delegation refused: {ANN} is not a member of group beta_user"
    assert info.value.errno == ENOAUTH
    with pytest.raises(AccessDenied, match="is not a member of group no_such_group"):
        resolve_caller(PORTAL, None, [ANN, "no_such_group"], registry)
    with pytest.raises(AccessDenied, match=f"{SUE} is not a member of group gamma_bad"):
        resolve_caller(PORTAL, None, [SUE, "gamma_bad"], registry)  # suspended or not, the group is not hers


def test_delegated_user_in_own_group_is_not_refused_by_membership(registry: Registry) -> None:
    assert resolve_caller(PORTAL, None, [SUE, "beta_user"], registry).group == "beta_user"  # active in VO beta


def test_delegated_unknown_or_suspended_user_is_anonymous(registry: Registry) -> None:
    unknown = resolve_caller(PORTAL, None, ["/CN=ghost", "alpha_user"], registry)
    assert unknown.anonymous and unknown.delegated_from == PORTAL
    suspended = resolve_caller(PORTAL, None, [SUE, "alpha_user"], registry)
    assert suspended.anonymous and suspended.identity_problem == "user sue is suspended in VO alpha"
    for caller in (unknown, suspended):
        with pytest.raises(AccessDenied, match="requires a registered user or host"):
            authorize(caller, ["authenticated"])
        authorize(caller, ["all"])  # "all" still admits them, as anonymous


def test_delegated_empty_group_uses_default(registry: Registry) -> None:
    caller = resolve_caller(PORTAL, None, [ANN, ""], registry)
    assert caller.group == "alpha_user"


@pytest.mark.parametrize("extra", [["only-one"], [ANN, "g", "x"], ["", "g"], [1, 2]])
def test_malformed_extra_credentials(registry: Registry, extra: list[object]) -> None:
    with pytest.raises(AccessDenied, match="malformed extra credentials"):
        resolve_caller(PORTAL, None, extra, registry)  # type: ignore[arg-type]


# --- deny by default and rule lookup ---------------------------------------------------------------------------


def test_no_rule_is_refused(registry: Registry) -> None:
    caller = _caller(registry, "user")
    for rule in (None, [], (), "", " , "):
        with pytest.raises(AccessDenied, match="no authorization rule"):
            authorize(caller, rule, method="forgotten")  # type: ignore[arg-type]


def test_select_rule_precedence() -> None:
    configured = {"m": ("NormalUser",), "Default": ("authenticated",), "FileTransfer/Default": ("TrustedHost",)}
    assert select_rule("m", configured=configured, handler_rule=["all"]).tokens == ("NormalUser",)  # type: ignore[union-attr]
    rule = select_rule("n", configured=configured, handler_rule=["all"])
    assert rule is not None and rule.tokens == ("all",) and rule.origin == "handler rule for n"
    rule = select_rule("n", configured=configured)
    assert rule is not None and rule.tokens == ("authenticated",)
    assert rule.origin == "configuration Authorization/Default"
    rule = select_rule("FileTransfer/FromClient", configured=configured)
    assert rule is not None and rule.tokens == ("TrustedHost",)
    assert select_rule("n", handler_default="all").tokens == ("all",)  # type: ignore[union-attr]
    assert select_rule("n", configured={"Default": ()}, handler_rule=[]) is None  # empty counts as unset
    assert select_rule("n") is None


def test_configuration_overrides_handler_rule(registry: Registry) -> None:
    caller = _caller(registry, "bad_user")
    handler_rule = ["authenticated"]
    authorize(caller, select_rule("m", handler_rule=handler_rule))
    with pytest.raises(AccessDenied, match="requires one of the properties NormalUser"):
        authorize(caller, select_rule("m", configured={"m": ("NormalUser",)}, handler_rule=handler_rule))


def test_rules_are_never_mutated(registry: Registry) -> None:
    # DIRAC's getValidGroups removes group: entries from the handler's class-level list on the first call.
    handler_rule = ["NormalUser", "group:alpha_user", "vo:alpha"]
    snapshot = list(handler_rule)
    for _ in range(3):
        with pytest.raises(AccessDenied):
            authorize(_caller(registry, "suspended_other_vo"), handler_rule)
        authorize(_caller(registry, "user"), handler_rule)
    assert handler_rule == snapshot
    authorize(_caller(registry, "user"), ("NormalUser", "group:alpha_user"))  # tuples work too


# --- tokens ----------------------------------------------------------------------------------------------------


def test_tokens_are_case_insensitive(registry: Registry) -> None:
    user = _caller(registry, "user")
    for rule in (["normaluser"], ["NORMALUSER"], ["ALL"], ["Authenticated"], ["GROUP:alpha_user"], ["VO:alpha"]):
        authorize(user, rule)
    with pytest.raises(AccessDenied):
        authorize(user, ["group:ALPHA_USER"])  # group names themselves are case-sensitive


def test_hosts_token(registry: Registry) -> None:
    authorize(_caller(registry, "bad_host"), ["hosts"])
    with pytest.raises(AccessDenied, match="requires a registered host"):
        authorize(_caller(registry, "user"), ["hosts"])
    authorize(_caller(registry, "user"), ["hosts", "NormalUser"])


def test_property_enum_and_any_string(registry: Registry) -> None:
    assert Property.TRUSTED_HOST == "TrustedHost"
    assert str(Property.NORMAL_USER) == "NormalUser"
    authorize(_caller(registry, "host"), [Property.TRUSTED_HOST])
    authorize(_caller(registry, "bad_host"), ["NotTrusted"])


def test_dip_peer_only_with_all(registry: Registry) -> None:
    anon = resolve_caller(None, None, "", registry)
    authorize(anon, ["all"])
    authorize(anon, "any")
    with pytest.raises(AccessDenied, match="requires a registered user or host in group alpha_user"):
        authorize(anon, ["all", "group:alpha_user"])


def test_reasons_speak_user_terms(registry: Registry) -> None:
    with pytest.raises(AccessDenied) as info:
        authorize(_caller(registry, "bad_user"), ["NormalUser", "SiteManager"], method="next_file")
    assert str(info.value) == (
        "Unauthorized query: method next_file requires one of the properties NormalUser, SiteManager; "
        "user ben in group gamma_bad has NoProperties"
    )
    with pytest.raises(AccessDenied) as info:
        authorize(_caller(registry, "suspended_other_vo"), ["NormalUser", "group:alpha_user", "vo:gamma"])
    assert info.value.reason == (
        "this method requires group alpha_user or a group of VO gamma; you are user sue in group beta_user"
    )
    with pytest.raises(AccessDenied) as info:
        authorize(_caller(registry, "suspended"), ["authenticated"])
    assert "user sue is suspended in VO alpha" in info.value.reason


def test_access_denied_is_an_authorization_error() -> None:
    err = AccessDenied("because")
    assert isinstance(err, AuthorizationError) and err.errno == ENOAUTH
    assert str(err).startswith("Unauthorized query")
    clone = pickle.loads(pickle.dumps(err))
    assert clone.reason == "because"


def test_rule_parse() -> None:
    rule = AuthRule.parse("NormalUser, group:g1 ,vo:v, any, NormalUser")
    assert rule.allow_all and rule.properties == ("NormalUser",)
    assert rule.groups == frozenset({"g1"}) and rule.vos == frozenset({"v"})
    assert AuthRule.parse(["group:g"]).allow_all  # group-only rule: anyone registered in g (DIRAC)


def test_cred_dict(registry: Registry) -> None:
    creds = resolve_caller(PORTAL, None, [ANN, "alpha_user"], registry).to_cred_dict()
    assert creds == {
        "DN": ANN,
        "username": "ann",
        "group": "alpha_user",
        "properties": ["NormalUser"],
        "VO": "alpha",
        "delegatedFrom": PORTAL,
    }


# --- property test ---------------------------------------------------------------------------------------------

TOKENS = st.one_of(
    st.sampled_from(["all", "Any", "authenticated", "hosts", "NormalUser", "TrustedHost", "group:", "vo:"]),
    st.builds(lambda g: f"group:{g}", st.sampled_from(["alpha_user", "beta_user", "hosts", "nope"])),
    st.builds(lambda v: f"vo:{v}", st.sampled_from(["alpha", "beta", "x"])),
    st.text(max_size=12),
)
RULES = st.one_of(st.none(), st.lists(TOKENS, max_size=6), st.lists(TOKENS, max_size=6).map(tuple), st.text())


@given(identity=st.sampled_from(sorted(IDENTITIES)), rule=RULES)
def test_authorize_only_raises_authorization_error_and_never_mutates(identity: str, rule: object) -> None:
    registry = Registry.from_config(load_cfg_text(CFG))
    caller = _caller(registry, identity)
    before_rule = copy.deepcopy(rule)
    before_caller = copy.deepcopy(caller)
    try:
        authorize(caller, rule, method="m")  # type: ignore[arg-type]
    except AuthorizationError as exc:
        assert str(exc).startswith("Unauthorized query")
    assert rule == before_rule
    assert caller == before_caller
