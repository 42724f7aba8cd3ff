"""Client: attribute proxying, options, per-call settings, executeRPC, rpcStub, threads. A fake target, no I/O."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from support.threads import run_concurrently

from rpcframework.client import CallView, Client, RemoteMethod, Timeout, UnknownOptionError
from rpcframework.client.aio import AsyncClient
from rpcframework.client.client import executeRPCStub
from rpcframework.client.options import ClientOptions
from rpcframework.errors import AuthorizationError, ConfigurationError
from rpcframework.returnvalues import ENOAUTH, S_ERROR, S_OK
from rpcframework.security.delegation import delegate

from .conftest import Call, RecordingTarget, RecordingTransport


class DispatcherClient(Client):
    serverURL = "DataManagement/Dispatcher"
    remoteMethods = ("next_file", "report")

    def next_file(self, project_id: int) -> Any:
        """A documented wrapper: the subclass method wins over proxying."""
        return self.executeRPC("next_file", project_id, "wrapped")

    @property
    def broken(self) -> str:
        raise AttributeError("internal")


# -- proxying ----------------------------------------------------------------------------------------------------


def test_attributes_are_cached_remote_methods(target: RecordingTarget) -> None:
    client = Client("S/C", transport=target)
    method = client.list_projects
    assert isinstance(method, RemoteMethod)
    assert method.name == "list_projects"
    assert client.list_projects is method, "built once per name per client"
    assert Client("S/C", transport=target).list_projects is not method
    assert client.list_projects(1, "a")["Value"] == {"method": "list_projects", "args": [1, "a"]}


def test_dotted_names(target: RecordingTarget) -> None:
    client = Client("S/C", transport=target)
    assert client.a.b.c is client.a.b.c
    client.a.b(1)
    client.a.b.c()
    assert [call.method for call in target.calls] == ["a.b", "a.b.c"]


@pytest.mark.parametrize("name", ["_private", "__wrapped__", "__getstate__", "_rpc_methods", "__deepcopy__"])
def test_private_and_dunder_names_are_never_proxied(name: str, target: RecordingTarget) -> None:
    client = Client("S/C", transport=target)
    if name in dir(client):
        assert not isinstance(getattr(client, name), RemoteMethod)
    else:
        with pytest.raises(AttributeError):
            getattr(client, name)
    with pytest.raises(AttributeError):
        _ = client.some._private
    assert target.calls == []


def test_reserved_names_are_the_client_api(target: RecordingTarget) -> None:
    client = Client("S/C", transport=target, timeout=30)
    assert isinstance(client.options, ClientOptions)
    assert client.timeout == 30
    assert client.serviceURL == "S/C" == client.getServer()
    for name in ("executeRPC", "executeRPCStub", "close", "with_options", "remote", "setServer", "getdoc"):
        assert not isinstance(getattr(client, name, None), RemoteMethod), name


def test_a_subclass_property_raising_attribute_error_is_not_proxied(target: RecordingTarget) -> None:
    client = DispatcherClient(transport=target)
    with pytest.raises(AttributeError, match="broken"):
        _ = client.broken
    assert target.calls == []


def test_subclass_methods_win(target: RecordingTarget) -> None:
    client = DispatcherClient(transport=target)
    assert client.next_file(7)["Value"] == {"method": "next_file", "args": [7, "wrapped"]}
    assert isinstance(client.report, RemoteMethod)


def test_remote_methods_named_like_the_api_are_still_reachable(target: RecordingTarget) -> None:
    client = Client("S/C", transport=target)
    client.remote("close")(1)
    client.with_options().options()
    client.with_options().executeRPC()
    assert [call.method for call in target.calls] == ["close", "options", "executeRPC"]
    with pytest.raises(ConfigurationError):
        client.remote("")


def test_dir_lists_the_api_and_known_remote_methods() -> None:
    names = dir(DispatcherClient())
    for expected in ("executeRPC", "with_options", "close", "options", "timeout", "next_file", "report"):
        assert expected in names


def test_repr() -> None:
    client = DispatcherClient(timeout=5)
    assert repr(client) == "<DispatcherClient service='DataManagement/Dispatcher' timeout=5.0>"
    assert repr(client.ping).startswith("<RemoteMethod 'ping' of <DispatcherClient")
    assert "timeout=3" in repr(client.with_options(timeout=3))


def test_subclass_that_forgets_super_init_gets_a_clear_error() -> None:
    class Broken(Client):
        def __init__(self) -> None:
            pass

    with pytest.raises(AttributeError, match=r"__init__\(\) has not run"):
        _ = Broken().ping


# -- options -----------------------------------------------------------------------------------------------------


def test_unknown_option_names_the_valid_ones() -> None:
    with pytest.raises(UnknownOptionError) as info:
        Client("S/C", delegatedGrop="x", keepAliveLapse=150)
    text = str(info.value)
    assert "delegatedGrop" in text and "keepAliveLapse" in text
    for valid in ("timeout", "proxyLocation", "useCertificates", "delegatedDN", "delegatedGroup", "skipCACheck"):
        assert valid in text
    assert isinstance(info.value, TypeError) and isinstance(info.value, ConfigurationError)


def test_options_are_validated_once_into_a_frozen_value() -> None:
    client = Client(
        "S/C",
        timeout=120,
        proxyLocation="/tmp/x509up_u1",
        useCertificates=False,
        delegatedDN="/DC=org/CN=u",
        delegatedGroup="users",
        skipCACheck=False,
        setup="Production",
        VO="lhcb",
        retries=2,
        backend="pyopenssl",
    )
    options = client.options
    assert options.timeout == Timeout(total=120)
    assert options.retries.total == 2
    with pytest.raises(AttributeError):
        options.setup = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": "600"},
        {"useCertificates": "yes"},
        {"delegatedGroup": "g"},
        {"setup": ""},
        {"retries": -1},
    ],
)
def test_bad_option_values(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Client("S/C", **options)


def test_bad_transport_and_url() -> None:
    with pytest.raises(ConfigurationError, match="CallTarget"):
        Client("S/C", transport=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Client("")


def test_set_timeout_and_set_server(target: RecordingTarget) -> None:
    class AccountingClient(Client):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.setServer("Accounting/ReportGenerator")  # the DIRAC idiom

    client = AccountingClient(transport=target)
    client.setTimeout(42)
    client.listReports("t")
    assert target.calls[-1].timeout == 42
    assert client.listReports("t")["rpcStub"][0][0] == "Accounting/ReportGenerator"
    client.setTimeout(None)
    assert client.timeout == 600


# -- per-call settings -------------------------------------------------------------------------------------------


def test_dirac_per_call_settings_are_not_sent_to_the_remote_method(transport: RecordingTransport) -> None:
    client = Client("S/C", transport=transport, timeout=100)
    client.ping()
    client.ping(timeout=30)
    client.ping(url="Other/Service", depth=2)
    client.ping(url="", timeout=None)  # DIRAC's spelling of "the defaults"
    main, other = transport.opened["S/C"], transport.opened["Other/Service"]
    assert [(c.timeout, c.kwargs) for c in main.calls] == [(100, {}), (30, {}), (100, {})]
    assert other.calls == [Call("Other/Service", "ping", (), {"depth": 2}, 100)]


def test_rpc_per_call_setting_uses_that_target(transport: RecordingTransport) -> None:
    prebuilt = RecordingTarget()
    client = Client("S/C", transport=transport)
    client.ping(1, rpc=prebuilt)
    assert transport.opened == {}
    assert prebuilt.calls == [Call(None, "ping", (1,), {}, 600)]
    with pytest.raises(ConfigurationError, match="rpc must be a CallTarget"):
        client.ping(rpc="not a target")


def test_remote_kwargs_named_url_timeout_rpc_have_collision_free_paths(transport: RecordingTransport) -> None:
    client = Client("S/C", transport=transport)
    remote = {"url": "http://x", "timeout": 60, "rpc": "v2"}
    client.with_options(timeout=5).resize(**remote)
    client.resize.call((1,), remote, timeout=7)
    client.with_options(timeout=5).resize.call((), remote)
    client.with_options(timeout=5).resize.call((), remote, timeout=9)
    calls = transport.opened["S/C"].calls
    assert [(c.args, c.kwargs, c.timeout) for c in calls] == [
        ((), remote, 5),
        ((1,), remote, 7),
        ((), remote, 5),
        ((), remote, 9),
    ]


def test_with_options_url_and_dotted_names(transport: RecordingTransport) -> None:
    view = Client("S/C", transport=transport).with_options(url="dips://h:9135/S/C")
    assert isinstance(view, CallView)
    assert view.a.b is view.a.b
    view.a.b(timeout=1)
    assert transport.opened["dips://h:9135/S/C"].calls == [Call("dips://h:9135/S/C", "a.b", (), {"timeout": 1}, 600)]
    with pytest.raises(AttributeError):
        _ = view._private


def test_get_rpc_is_a_view(target: RecordingTarget) -> None:
    client = Client("S/C", transport=target)
    client._getRPC(timeout=12).listReports("t")
    assert target.calls == [Call(None, "listReports", ("t",), {}, 12)]


def test_call_rejects_a_string_as_args(target: RecordingTarget) -> None:
    with pytest.raises(ConfigurationError):
        Client("S/C", transport=target).ping.call("abc")


# -- executeRPC --------------------------------------------------------------------------------------------------


def test_execute_rpc_both_forms(target: RecordingTarget) -> None:
    client = Client("S/C", transport=target)
    client.executeRPC("m", 1, 2, x=3, timeout=4)
    client.executeRPC(1, 2, call="m")
    assert target.calls == [Call(None, "m", (1, 2), {"x": 3}, 4), Call(None, "m", (1, 2), {}, 600)]
    with pytest.raises(TypeError):
        client.executeRPC()
    with pytest.raises(ConfigurationError):
        client.executeRPC(5)


# -- results and errors ------------------------------------------------------------------------------------------


def test_framework_errors_become_s_error_with_a_stub() -> None:
    def fail(call: Call) -> Any:
        raise AuthorizationError("Unauthorized query")

    result = Client("S/C", transport=RecordingTarget(fail)).ping()
    assert result["OK"] is False
    assert result["Errno"] == ENOAUTH
    assert result["rpcStub"] == (("S/C", {"timeout": 600.0}), "ping", ())


def test_remote_s_error_is_returned_as_is_plus_stub() -> None:
    result = Client("S/C", transport=RecordingTarget(lambda call: S_ERROR(5, "boom"))).ping()
    assert result["OK"] is False and result["Errno"] == 5 and "boom" in result["Message"]


def test_bugs_in_a_target_propagate() -> None:
    def bug(call: Call) -> Any:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        Client("S/C", transport=RecordingTarget(bug)).ping()


def test_malformed_results_become_s_error() -> None:
    result = Client("S/C", transport=RecordingTarget(lambda call: {"weird": 1})).ping()
    assert result["OK"] is False and "malformed" in result["Message"]


def test_results_are_copied_before_the_stub_is_added() -> None:
    shared = S_OK(1)
    Client("S/C", transport=RecordingTarget(lambda call: shared)).ping()
    assert "rpcStub" not in shared


def test_no_service_and_an_unresolvable_service_are_s_errors(
    target: RecordingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = Client(transport=target).ping()
    assert result["OK"] is False and "serverURL" in result["Message"]
    monkeypatch.delenv("RPCFRAMEWORK_CONFIG", raising=False)
    monkeypatch.delenv("DIRACSYSCONFIG", raising=False)
    unresolved = Client("S/C").ping()
    assert unresolved["OK"] is False
    assert "S/C" in unresolved["Message"]


def test_targets_are_opened_once_per_service_and_closed_with_the_client(transport: RecordingTransport) -> None:
    client = Client("S/C", transport=transport, setup="Production")
    for _ in range(3):
        client.ping()
        client.ping(url="O/S")
    assert set(transport.opened) == {"S/C", "O/S"}
    assert transport.options[0].setup == "Production"
    with client:
        pass
    assert all(target.closed for target in transport.opened.values())
    after = client.ping()
    assert after["OK"] is False and "closed" in after["Message"]


def test_an_injected_call_target_is_not_closed_by_the_client(target: RecordingTarget) -> None:
    Client("S/C", transport=target).close()
    assert not target.closed


# -- rpcStub -----------------------------------------------------------------------------------------------------


def test_stub_has_the_diset_shape_and_no_local_credentials(target: RecordingTarget) -> None:
    client = Client(
        "DataManagement/Dispatcher",
        transport=target,
        timeout=120,
        useCertificates=True,
        proxyLocation="/tmp/x509up_u1",
        skipCACheck=True,
        delegatedDN="/DC=org/CN=u",
        delegatedGroup="g",
        setup="Production",
        backend="pyopenssl",
        retries=1,
    )
    stub = client.next_file(7, "w")["rpcStub"]
    assert stub == (
        (
            "DataManagement/Dispatcher",
            {"timeout": 120.0, "setup": "Production", "delegatedDN": "/DC=org/CN=u", "delegatedGroup": "g"},
        ),
        "next_file",
        (7, "w"),
    )
    assert client.next_file(7, timeout=9, url="dips://h:1/D/D")["rpcStub"][0] == (
        "dips://h:1/D/D",
        {"timeout": 9, "setup": "Production", "delegatedDN": "/DC=org/CN=u", "delegatedGroup": "g"},
    )
    with_kwargs = client.next_file(7, worker="w")["rpcStub"]
    assert len(with_kwargs) == 4 and with_kwargs[3] == {"worker": "w"}


def test_stub_replay_with_the_client_and_the_module_function(transport: RecordingTransport) -> None:
    client = Client("S/C", transport=transport, timeout=50, setup="Prod")
    first = client.report(1, [2], flag=True)
    replayed = client.executeRPCStub(first["rpcStub"])
    assert replayed["rpcStub"] == first["rpcStub"]
    # After a JSON round trip (how stubs are often stored) tuples are lists; replay still works.
    assert list(transport.opened) == ["S/C"], "same options: replayed through this client's target"
    stored = json.loads(json.dumps(first["rpcStub"]))
    executeRPCStub(stored, transport=transport.opened["S/C"])
    calls = transport.opened["S/C"].calls
    assert [(c.method, c.args, c.kwargs, c.timeout) for c in calls] == [("report", (1, [2]), {"flag": True}, 50)] * 3


def test_client_replays_a_stub_with_other_options_through_a_new_client(transport: RecordingTransport) -> None:
    client = Client("S/C", transport=transport, timeout=50)
    result = client.executeRPCStub([["O/S", {"timeout": 7, "setup": "Other"}], "m", [1]])
    assert result["rpcStub"] == (("O/S", {"timeout": 7.0, "setup": "Other"}), "m", (1,))
    assert transport.options[-1].setup == "Other"
    assert transport.opened["O/S"].closed, "the replay client is closed after the call"


def test_a_stub_records_the_delegation_in_force_as_diset_records_threadconfig(target: RecordingTarget) -> None:
    client = Client("S/C", transport=target, timeout=50)
    alice = "/DC=org/CN=alice"
    with delegate(alice, "dirac_user"):
        stub = client.report(1)["rpcStub"]
        async_stub = asyncio.run(AsyncClient("S/C", transport=target, timeout=50).report(1))["rpcStub"]
    recorded = {"timeout": 50, "delegatedDN": alice, "delegatedGroup": "dirac_user"}
    assert stub == async_stub == (("S/C", recorded), "report", (1,))
    assert client.report(1)["rpcStub"][0] == ("S/C", {"timeout": 50}), "outside the block: the client's own identity"
    # Replayed outside the block, the stub still acts for alice: a client with her identity makes the call.
    replaying = RecordingTransport()
    executeRPCStub(stub, transport=replaying)
    assert (replaying.options[-1].delegatedDN, replaying.options[-1].delegatedGroup) == (alice, "dirac_user")
    explicit = Client("S/C", transport=target, delegatedDN="/DC=org/CN=bob")
    with delegate(alice):
        assert explicit.report(1)["rpcStub"][0][1]["delegatedDN"] == "/DC=org/CN=bob", "an explicit option wins"


def test_replay_of_a_dirac_stub_drops_options_we_do_not_support(target: RecordingTarget) -> None:
    dirac_stub = [
        ["Transformation/TransformationManager", {"timeout": 600, "keepAliveLapse": 150}],
        "getTransformationStats",
        [449],
    ]
    result = executeRPCStub(dirac_stub, transport=target)
    assert result["OK"]
    assert target.calls == [Call(None, "getTransformationStats", (449,), {}, 600)]


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        [["S/C", {}], "m"],
        [["S/C"], "m", []],
        [["", {}], "m", []],
        [["S/C", {1: 2}], "m", []],
        [["S/C", {}], "", []],
        [["S/C", {}], "m", "args"],
        [["S/C", {}], "m", [], [1]],
    ],
)
def test_bad_stubs_are_refused(bad: object, target: RecordingTarget) -> None:
    with pytest.raises(ConfigurationError):
        executeRPCStub(bad, transport=target)
    assert target.calls == []


def test_a_stub_with_an_unknown_option_is_refused(target: RecordingTarget) -> None:
    with pytest.raises(UnknownOptionError, match="extraCredentials"):
        executeRPCStub([["S/C", {"extraCredentials": "hosts"}], "m", []], transport=target)


# -- threads -----------------------------------------------------------------------------------------------------


def test_thirty_two_threads_share_one_client(transport: RecordingTransport) -> None:
    client = DispatcherClient(transport=transport, timeout=20)
    seen: list[RemoteMethod] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        method = getattr(client, f"method_{index % 4}")
        shared = client.shared_name
        with lock:
            seen.append(shared)
        for n in range(50):
            result = method(index, n, timeout=5) if n % 2 else method(index, n)
            assert result["OK"] and result["Value"]["args"] == [index, n]
            assert result["rpcStub"][2] == (index, n)

    assert run_concurrently(worker, 32) == []
    assert len({id(method) for method in seen}) == 1, "one RemoteMethod per name, even under a race"
    assert list(transport.opened) == ["DataManagement/Dispatcher"], "one target, opened once"
    calls = transport.opened["DataManagement/Dispatcher"].calls
    assert len(calls) == 32 * 50
    assert sorted({c.timeout for c in calls}) == [5, 20]
