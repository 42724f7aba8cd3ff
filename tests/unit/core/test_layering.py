"""The package is layered: importing a lower layer never imports a higher one, and the root imports lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(m for m in sys.modules if m.startswith('rpcframework')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30).stdout
    return set(out.split())


@pytest.mark.parametrize("layer", ["rpcframework.protocol", "rpcframework.codec", "rpcframework.config"])
def test_a_lower_layer_imports_no_transport_client_or_server(layer):
    loaded = _modules_after(f"import {layer}")
    upper = sorted(m for m in loaded if m.split(".")[1:2] and m.split(".")[1] in {"server", "client", "transports"})
    assert upper == [], f"import {layer} loaded {upper}"


def test_the_root_package_loads_the_client_and_server_on_first_use():
    assert not any(
        m.startswith(("rpcframework.client", "rpcframework.server")) for m in _modules_after("import rpcframework")
    )
    loaded = _modules_after("import rpcframework; rpcframework.Client")
    assert "rpcframework.client" in loaded and "rpcframework.server" not in loaded


def test_the_root_exports_the_public_api_and_the_exception_tree():
    import rpcframework
    from rpcframework import errors

    for name in rpcframework.__all__:
        assert getattr(rpcframework, name) is not None, name
    exceptions = [n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.RPCFrameworkError)]
    assert set(exceptions) <= set(rpcframework.__all__)
    assert "InnerRPCClient" not in __import__("rpcframework.client").client.__all__
    with pytest.raises(AttributeError):
        rpcframework.NoSuchThing  # noqa: B018
