"""The DIRAC group inside a proxy (extension 1.2.42.42), read by the server as a DIRAC 9 service reads it.

dev-user is registered in ``users`` (the default group) and ``admins`` (``ServiceAdministrator``). A proxy made with
``--group admins`` must be served as admins; one naming a group the user is not in is refused, clearly. Real TLS on
127.0.0.1 against both server back ends; the DIRAC-made reference proxy is parsed byte for byte.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from support.certs import cn
from support.security_kit import SERVICE, Kit, address_of

from rpcframework.security.authz import AccessDenied, resolve_caller
from rpcframework.security.devca import issue_proxy
from rpcframework.security.dirac_chain import X509Chain
from rpcframework.security.registry import Registry
from rpcframework.security.x509 import DIRAC_GROUP_OID, dirac_group, identity_from_chain, load_pem_chain_file

pytestmark = pytest.mark.timeout(120)
BACKENDS = ["pyopenssl", pytest.param("m2crypto", marks=pytest.mark.m2crypto)]
DIRAC_PROXY = Path(__file__).parent / "data" / "dirac-proxy-group-admins.pem"
GROUPS: dict[str, Any] = {
    "Registry": {
        "Groups": {
            "admins": {"Users": "bob, dev-user", "Properties": "ServiceAdministrator"},
            "pilots": {"Users": "bob", "Properties": "GenericPilot"},
        }
    }
}


@pytest.fixture(scope="module")
def proxies(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("group-proxies")
    user = kit.user
    made: dict[str, Path] = {}

    def make(name: str, signer: Path, **options: Any) -> None:
        made[name] = root / f"{name}.pem"
        key = signer if signer != user.cert_file else user.key_file
        issue_proxy(signer, key, made[name], key_type="ec", **options)

    make("admins", user.cert_file, group="admins")
    make("users", user.cert_file, group="users")
    make("pilots", user.cert_file, group="pilots")  # dev-user is not a pilot
    make("limited-admins", user.cert_file, group="admins", limited=True)
    # A proxy of a proxy with two groups: DIRAC's precedence is "nearest the user certificate wins".
    make("inner-admins", user.cert_file, group="admins")
    make("outer-users-over-admins", made["inner-admins"], group="users")
    # A proxy without a group made from a proxy with one: the inner group still counts.
    make("plain-over-admins", made["inner-admins"])
    return made


def _who(kit: Kit, reactor: Any, proxy: Path, **options: Any) -> dict[str, Any]:
    port = address_of(reactor)[1]
    result = kit.client(f"dips://localhost:{port}/{SERVICE}", proxy=proxy, **options).who("n")
    return result


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_group_in_the_proxy_is_the_callers_group(kit, serve, proxies, backend):
    reactor = serve(GROUPS, backend=backend)
    seen = _who(kit, reactor, proxies["admins"])
    assert seen["OK"], seen
    assert seen["Value"]["group"] == "admins" and seen["Value"]["properties"] == ["ServiceAdministrator"]
    # ... and decides group-based rules: `secret` needs ServiceAdministrator, which only admins has.
    port = address_of(reactor)[1]
    assert kit.client(f"dips://localhost:{port}/{SERVICE}", proxy=proxies["admins"]).secret()["OK"]
    refused = kit.client(f"dips://localhost:{port}/{SERVICE}", proxy=proxies["users"]).secret()
    assert not refused["OK"] and "ServiceAdministrator" in refused["Message"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_a_group_the_registry_default_applies(kit, serve, backend):
    reactor = serve(GROUPS, backend=backend)
    seen = _who(kit, reactor, kit.user.proxy_file)
    assert seen["OK"] and seen["Value"]["group"] == "users", seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_group_the_user_is_not_in_is_refused_naming_dn_and_group(kit, serve, proxies, backend):
    reactor = serve(GROUPS, backend=backend)
    refused = _who(kit, reactor, proxies["pilots"])
    assert not refused["OK"]
    assert kit.user.dn in refused["Message"] and "group pilots" in refused["Message"], refused
    # even methods open to everyone: the proxy claims a group the registry does not give it
    port = address_of(reactor)[1]
    opened = kit.client(f"dips://localhost:{port}/{SERVICE}", proxy=proxies["pilots"]).open()
    assert not opened["OK"] and "pilots" in opened["Message"]
    # the service goes on serving others
    assert _who(kit, reactor, proxies["admins"])["OK"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_proxy_of_a_proxy_takes_the_group_nearest_the_user_certificate(kit, serve, proxies, backend):
    reactor = serve(GROUPS, backend=backend)
    assert _who(kit, reactor, proxies["outer-users-over-admins"])["Value"]["group"] == "admins"
    assert _who(kit, reactor, proxies["plain-over-admins"])["Value"]["group"] == "admins"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_limited_proxy_keeps_its_group_and_its_limit(kit, serve, proxies, backend):
    reactor = serve(GROUPS, backend=backend)
    seen = _who(kit, reactor, proxies["limited-admins"])
    assert seen["OK"] and seen["Value"]["group"] == "admins"
    port = address_of(reactor)[1]
    me = kit.client(f"dips://localhost:{port}/{SERVICE}", proxy=proxies["limited-admins"]).whoami()
    assert me["Value"]["isLimitedProxy"] is True and me["Value"]["group"] == "admins"


def test_the_proxy_group_wins_over_a_group_sent_in_the_proposal(kit):
    """An old DIRAC client may send a bare group as extra credentials; the verified proxy group decides, and a
    proposal asking for another group than the proxy names is refused."""
    registry = Registry.for_config(kit.config(GROUPS))
    assert resolve_caller(kit.user.dn, "admins", "admins", registry).group == "admins"
    with pytest.raises(AccessDenied, match="proxy for group admins but asks for group users"):
        resolve_caller(kit.user.dn, "admins", "users", registry)


def test_a_host_certificate_keeps_its_host_identity(kit, serve):
    reactor = serve(GROUPS)
    port = address_of(reactor)[1]
    me = kit.client(f"dips://localhost:{port}/{SERVICE}", host=True).whoami()
    assert me["OK"] and me["Value"]["group"] == "hosts" and me["Value"]["username"] == "localhost"


def test_delegation_by_a_trusted_host_is_not_confused_with_the_proxy_group(kit, serve):
    reactor = serve(GROUPS)
    port = address_of(reactor)[1]
    portal = kit.client(
        f"dips://localhost:{port}/{SERVICE}", host=True, delegatedDN=kit.user.dn, delegatedGroup="admins"
    )
    seen = portal.who("n")
    assert seen["OK"] and seen["Value"]["group"] == "admins" and seen["Value"]["delegatedFrom"] == kit.host.dn


def test_whoami_through_the_cli_shows_the_group(kit, serve, proxies):
    reactor = serve(GROUPS)
    port = address_of(reactor)[1]
    env = {
        "X509_CERT_DIR": str(kit.ca.cert_dir),
        "X509_USER_PROXY": str(proxies["admins"]),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "rpcframework.cli.main", "whoami", f"dips://localhost:{port}/{SERVICE}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "admins" in proc.stdout and "ServiceAdministrator" in proc.stdout, proc.stdout


def test_the_cli_writes_the_group_extension(kit, tmp_path):
    out = tmp_path / "cli-proxy.pem"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rpcframework.cli.main",
            "ca",
            "proxy",
            str(kit.ca.directory),
            "--group",
            "admins",
            "--out",
            str(out),
            "--cert",
            str(kit.user.proxy_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    leaf = load_pem_chain_file(out)[0]
    extension = leaf.extensions.get_extension_for_oid(DIRAC_GROUP_OID)
    assert not extension.critical and extension.value.value == b"\x16\x06admins"  # what DIRAC writes


def test_the_dirac_made_reference_proxy_is_read_as_dirac_reads_it():
    chain = load_pem_chain_file(DIRAC_PROXY)
    assert dirac_group(chain[0]) == "admins"
    raw = chain[0].extensions.get_extension_for_oid(DIRAC_GROUP_OID)
    assert not raw.critical and raw.value.value == bytes.fromhex("160661646d696e73")
    identity = identity_from_chain(chain)
    assert identity.dirac_group == "admins" and identity.is_proxy and not identity.is_limited_proxy


def test_resolution_rules_without_the_network(kit):
    registry = Registry.for_config(kit.config(GROUPS))
    caller = resolve_caller(kit.user.dn, "admins", "", registry)
    assert caller.group == "admins" and caller.has_property("ServiceAdministrator")
    with pytest.raises(AccessDenied, match="not a member of group pilots"):
        resolve_caller(kit.user.dn, "pilots", "", registry)
    assert resolve_caller(kit.host.dn, "admins", "", registry).is_host  # a host keeps its host identity
    assert resolve_caller("/CN=nobody", "admins", "", registry).anonymous


def test_a_malformed_group_extension_is_refused(kit, tmp_path):
    """A proxy whose 1.2.42.42 is not an IA5String group name never yields a group."""
    from cryptography.hazmat.primitives import hashes, serialization

    user = load_pem_chain_file(kit.user.cert_file)[0]
    key = serialization.load_pem_private_key(kit.user.key_file.read_bytes(), None)
    now = datetime.datetime.now(datetime.UTC)
    bad = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([*user.subject.rdns, x509.RelativeDistinguishedName([cn("77")])]))
        .issuer_name(user.subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(77)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.UnrecognizedExtension(DIRAC_GROUP_OID, b"\x0c\x03a b"), critical=False)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    with pytest.raises(ValueError, match="malformed"):
        dirac_group(bad)


# ---------------------------------------------------------------------------------------------------------------
# A DIRAC handler reading credDict["x509Chain"] the DIRAC way runs unchanged.

DIRAC_STYLE_HANDLER = """
from rpcframework.server import RequestHandler
from rpcframework.returnvalues import S_OK, S_ERROR


class DiracStyleHandler(RequestHandler):
    auth_inspect = ["authenticated"]
    types_inspect = []

    def export_inspect(self):
        credDict = self.getRemoteCredentials()
        chain = credDict["x509Chain"]
        result = chain.getNumCertsInChain()
        if not result["OK"]:
            return result
        count = result["Value"]
        subjects = []
        for i in range(count):
            cert = chain.getCertInChain(i)["Value"]
            subjects.append((cert.getSubjectDN()["Value"], cert.getIssuerDN()["Value"]))
            cert.getNotAfterDate()["Value"]
        issuer = chain.getIssuerCert()["Value"]
        return S_OK({
            "count": count,
            "subjects": subjects,
            "group": chain.getDIRACGroup()["Value"],
            "isProxy": chain.isProxy()["Value"],
            "isLimitedProxy": chain.isLimitedProxy()["Value"],
            "remaining": chain.getRemainingSecs()["Value"],
            "identity": issuer.getSubjectDN()["Value"],
            "pem": chain.dumpAllToString()["Value"].count("BEGIN CERTIFICATE"),
            "outOfRange": chain.getCertInChain(count + 5)["OK"],
        })

    auth_chain_group = ["all"]
    types_chain_group = []

    def export_chain_group(self):
        credDict = self.getRemoteCredentials()
        found = credDict["x509Chain"].getDIRACGroup()
        ca_group = credDict["x509Chain"].getCertInChain(-1)["Value"].getDIRACGroup()
        return S_OK({"group": credDict["group"], "chainOK": found["OK"], "chain": found.get("Value"),
                     "message": found.get("Message", ""), "caGroup": ca_group["Value"]})
"""


def test_a_handler_written_against_diracs_creddict_runs_unchanged(kit, proxies, tmp_path, monkeypatch):
    from rpcframework.server import Service, ServiceReactor

    (tmp_path / "dirac_style.py").write_text(DIRAC_STYLE_HANDLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    from dirac_style import DiracStyleHandler  # type: ignore[import-not-found]

    service = Service("Sec/DiracStyle", DiracStyleHandler, config=kit.config(GROUPS), port=0)
    reactor = ServiceReactor([service], host="127.0.0.1", tls=kit.server_tls()).start()
    try:
        port = reactor.ports["Sec/DiracStyle"]
        for proxy, group in ((proxies["admins"], "admins"), (kit.user.proxy_file, "users")):
            seen = kit.client(f"dips://localhost:{port}/Sec/DiracStyle", proxy=proxy).inspect()
            assert seen["OK"], seen
            value = seen["Value"]
            assert value["group"] == group and value["isProxy"] is True and value["isLimitedProxy"] is False
            assert value["identity"] == kit.user.dn and value["count"] >= 2 and value["pem"] == value["count"]
            assert value["subjects"][0][1] == kit.user.dn and 0 < value["remaining"] <= 13 * 3600
            assert value["outOfRange"] is False
    finally:
        reactor.stop(timeout=5)


def test_the_chain_object_answers_like_diracs_for_a_plain_certificate(kit):
    chain = X509Chain(load_pem_chain_file(kit.user.cert_file), default_group="users")
    assert chain.isProxy() == {"OK": True, "Value": False}
    assert not chain.getDIRACGroup()["OK"]  # DIRAC: only proxies carry a group
    assert chain.getIssuerCert()["Value"].getSubjectDN()["Value"] == kit.user.dn
    assert chain.certificates[0].subject.rfc4514_string()


def test_the_chain_object_answers_only_a_group_the_service_checked(kit, tmp_path, monkeypatch):
    """Found by the attack run: a host's proxy, or an unregistered certificate's, can name any group; the chain
    object must not hand that group to a ported handler that reads it instead of credDict["group"]."""
    from rpcframework.server import Service, ServiceReactor

    (tmp_path / "dirac_style_groups.py").write_text(DIRAC_STYLE_HANDLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    from dirac_style_groups import DiracStyleHandler  # type: ignore[import-not-found]

    host_proxy = tmp_path / "worker-admins.pem"
    issue_proxy(kit.untrusted_host.cert_file, kit.untrusted_host.key_file, host_proxy, key_type="ec", group="admins")
    stranger_proxy = tmp_path / "stranger-admins.pem"
    issue_proxy(kit.stranger.cert_file, kit.stranger.key_file, stranger_proxy, key_type="ec", group="admins")
    admins = tmp_path / "admins.pem"
    issue_proxy(kit.user.cert_file, kit.user.key_file, admins, key_type="ec", group="admins")
    service = Service("Sec/DiracStyle", DiracStyleHandler, config=kit.config(GROUPS), port=0)
    reactor = ServiceReactor([service], host="127.0.0.1", tls=kit.server_tls()).start()
    try:
        url = f"dips://localhost:{reactor.ports['Sec/DiracStyle']}/Sec/DiracStyle"
        host_result = kit.client(url, proxy=host_proxy).chain_group()
        assert host_result["OK"], host_result
        host_seen = host_result["Value"]
        assert host_seen["group"] == "hosts" and not host_seen["chainOK"] and "admins" in host_seen["message"]
        stranger_seen = kit.client(url, proxy=stranger_proxy).chain_group()["Value"]
        assert stranger_seen["group"] == "visitor" and not stranger_seen["chainOK"]
        user_seen = kit.client(url, proxy=admins).chain_group()["Value"]
        assert user_seen["chainOK"] and user_seen["chain"] == "admins" == user_seen["group"]
        assert user_seen["caGroup"] is False  # the CA certificate has no group of the caller's
    finally:
        reactor.stop(timeout=5)
