"""The pytest plugin's fixtures work as docs/testing.md shows: a real TLS service and a client that reaches it."""

from __future__ import annotations

from typing import Any

from rpcframework import S_OK, Client, RequestHandler
from rpcframework.security.devca import DevCA
from rpcframework.testing import ServeFactory, dev_ca_paths


class GreeterHandler(RequestHandler):
    types_greet = [str]
    auth_greet = ["authenticated"]

    def export_greet(self, name: str) -> Any:
        return S_OK(f"hello {name}, you are {self.getRemoteCredentials().get('DN')}")


REGISTRY = {
    "Users": {"dev-user": {"DN": "/DC=org/DC=rpcframework/OU=Users/CN=dev-user"}},
    "Groups": {"users": {"Users": "dev-user", "Properties": "NormalUser"}},
    "DefaultGroup": "users",
}


def test_dev_ca_fixture_has_every_file(rpcframework_dev_ca: DevCA) -> None:
    for path in dev_ca_paths(rpcframework_dev_ca).values():
        assert path.exists(), path


def test_serve_and_call(rpcframework_serve: ServeFactory, rpcframework_client_options: dict[str, Any]) -> None:
    url = rpcframework_serve(GreeterHandler, "Demo/Greeter", registry=REGISTRY)
    assert url.startswith("dips://127.0.0.1:")
    with Client(url=url, **rpcframework_client_options) as client:
        result = client.greet("world")
    assert result["OK"], result
    assert result["Value"] == "hello world, you are /DC=org/DC=rpcframework/OU=Users/CN=dev-user"


def test_unregistered_caller_is_refused(
    rpcframework_serve: ServeFactory, rpcframework_client_options: dict[str, Any]
) -> None:
    url = rpcframework_serve(GreeterHandler, "Demo/Greeter")  # empty registry: nobody is "authenticated"
    with Client(url=url, **rpcframework_client_options) as client:
        result = client.greet("world")
    assert result["OK"] is False
    assert result["Errno"] == 1111
