"""DISET URL parsing and System/Component -> URL resolution."""

from __future__ import annotations

import pytest

from rpcframework.config import (
    ServiceURL,
    ServiceURLs,
    load_cfg_text,
    load_dict,
    parse_system_component,
    parse_url,
    parse_url_list,
    resolve_service_urls,
)
from rpcframework.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("dips://host.example.org:9135/DataManagement/Dispatcher", ("dips", "host.example.org", 9135)),
        ("dip://localhost:1/S/C", ("dip", "localhost", 1)),
        ("DIPS://Host:9135/S/C", ("dips", "Host", 9135)),
        ("  dips://h:9135/S/C  ", ("dips", "h", 9135)),
        ("dips://h:9135/S/C/", ("dips", "h", 9135)),
        ("dips://[::1]:9135/S/C", ("dips", "::1", 9135)),
        ("dips://[2001:db8::1]:65535/S/C", ("dips", "2001:db8::1", 65535)),
        ("dips://192.0.2.7:9135/S/C", ("dips", "192.0.2.7", 9135)),
    ],
)
def test_good_urls(url: str, expected: tuple[str, str, int]) -> None:
    parsed = parse_url(url)
    assert (parsed.scheme, parsed.host, parsed.port) == expected
    assert parsed.path in ("DataManagement/Dispatcher", "S/C")
    assert parse_url(str(parsed)) == parsed  # canonical form round-trips


def test_url_parts_and_canonical_form() -> None:
    url = parse_url("dips://[2001:db8::1]:9135/DataManagement/Dispatcher")
    assert url == ServiceURL("dips", "2001:db8::1", 9135, "DataManagement/Dispatcher")
    assert (url.system, url.component, url.netloc, url.secure) == (
        "DataManagement",
        "Dispatcher",
        "[2001:db8::1]:9135",
        True,
    )
    assert str(url) == "dips://[2001:db8::1]:9135/DataManagement/Dispatcher"
    assert not parse_url("dip://h:1/S/C").secure


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("dips://host/System/Component", "dips URL needs a port: dips://host:9135/System/Component"),
        ("dips://host:/S/C", "needs a port"),
        ("dip://h/S/C", "dip URL needs a port: dip://host:9135/S/C"),
        ("https://host:443/S/C", "unsupported scheme 'https'"),
        ("http://host:80/S/C", "speaks dip:// \\(plain\\) and dips:// \\(TLS\\)"),
        ("dips://::1:9135/S/C", "IPv6 address must be written in brackets"),
        ("dips://[::1/S/C", "unclosed"),
        ("dips://[not-v6]:9135/S/C", "not an IPv6 address"),
        ("dips://[::1]x/S/C", "expected ':port'"),
        ("dips://h:99999/S/C", "between 1 and 65535"),
        ("dips://h:0/S/C", "between 1 and 65535"),
        ("dips://h:abc/S/C", "between 1 and 65535"),
        ("dips://:9135/S/C", "no host"),
        ("dips://bad_host!:9135/S/C", "not a valid host name"),
        ("dips://user@h:9135/S/C", "user information"),
        ("dips://h:9135/S/C?x=1", "query strings"),
        ("dips://h:9135", "no service path"),
        ("dips://h:9135/OnlySystem", "must be 'System/Component'"),
        ("dips://h:9135/S/C/extra", "must be 'System/Component'"),
        ("DataManagement/Dispatcher", "not a URL"),
        ("", "not a URL"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_url(url)


def test_default_path_fills_a_missing_path() -> None:
    assert str(parse_url("dips://h:9135", default_path="S/C")) == "dips://h:9135/S/C"
    assert str(parse_url("dips://h:9135/", default_path="S/C")) == "dips://h:9135/S/C"
    assert str(parse_url("dips://h:9135/X/Y", default_path="S/C")) == "dips://h:9135/X/Y"


def test_comma_lists_with_spaces_and_duplicates() -> None:
    urls = parse_url_list(" dips://a:1/S/C ,dips://[::1]:2/S/C,, dips://a:1/S/C ")
    assert [str(u) for u in urls] == ["dips://a:1/S/C", "dips://[::1]:2/S/C"]
    assert parse_url_list("") == ()
    with pytest.raises(ConfigurationError, match="needs a port"):
        parse_url_list("dips://a:1/S/C, dips://b/S/C")


@pytest.mark.parametrize("name", ["S", "S/C/D", "/", "S/", "a b/c", ""])
def test_bad_system_component(name: str) -> None:
    with pytest.raises(ConfigurationError, match="System/Component"):
        parse_system_component(name)


def test_system_component_tolerates_slashes_and_spaces() -> None:
    assert parse_system_component(" /DataManagement/Dispatcher/ ") == ("DataManagement", "Dispatcher")


CFG = """
Systems
{
  DataManagement
  {
    URLs
    {
      Dispatcher = dips://h1:9135/DataManagement/Dispatcher , dips://h2:9135/DataManagement/Dispatcher,
      NoPath = dips://h1:9136
      Main = dips://$MAINSERVERS$:9137/DataManagement/Main
      Bad = dips://h1/DataManagement/Bad
    }
    FailoverURLs
    {
      Dispatcher = dips://far.example.org:9135/DataManagement/Dispatcher
    }
  }
}
Operations
{
  Defaults
  {
    MainServers = m1.example.org, m2.example.org
  }
}
"""


def test_resolve_primary_and_failover() -> None:
    config = load_cfg_text(CFG)
    urls = resolve_service_urls(config, "DataManagement/Dispatcher")
    assert urls == ServiceURLs(
        ("dips://h1:9135/DataManagement/Dispatcher", "dips://h2:9135/DataManagement/Dispatcher"),
        ("dips://far.example.org:9135/DataManagement/Dispatcher",),
    )
    assert urls.all[-1] == "dips://far.example.org:9135/DataManagement/Dispatcher"


def test_resolve_fills_path_and_expands_main_servers() -> None:
    config = load_cfg_text(CFG)
    assert resolve_service_urls(config, "DataManagement/NoPath").primary == ("dips://h1:9136/DataManagement/NoPath",)
    assert resolve_service_urls(config, "DataManagement/Main").primary == (
        "dips://m1.example.org:9137/DataManagement/Main",
        "dips://m2.example.org:9137/DataManagement/Main",
    )


def test_resolve_errors_name_the_option() -> None:
    config = load_cfg_text(CFG)
    with pytest.raises(ConfigurationError, match=r"/Systems/DataManagement/URLs/Bad: .*needs a port"):
        resolve_service_urls(config, "DataManagement/Bad")
    with pytest.raises(ConfigurationError, match="set /Systems/Other/URLs/Thing = dips://host:port/Other/Thing"):
        resolve_service_urls(config, "Other/Thing")
    no_main = load_dict({"Systems": {"S": {"URLs": {"C": "dips://$MAINSERVERS$:1/S/C"}}}})
    with pytest.raises(ConfigurationError, match="MainServers"):
        resolve_service_urls(no_main, "S/C")


def test_full_urls_pass_through() -> None:
    config = load_dict({})
    assert resolve_service_urls(config, "dips://x:1/S/C") == ServiceURLs(("dips://x:1/S/C",))
    assert resolve_service_urls(config, "dips://x:1/S/C, dip://[::1]:2/S/C").primary == (
        "dips://x:1/S/C",
        "dip://[::1]:2/S/C",
    )


def test_old_setup_layout() -> None:
    config = load_dict(
        {
            "DIRAC": {"Setup": "Production", "Setups": {"Production": {"DataManagement": "Prod"}}},
            "Systems": {
                "DataManagement": {"Prod": {"URLs": {"Dispatcher": "dips://old:9135/DataManagement/Dispatcher"}}}
            },
        }
    )
    assert resolve_service_urls(config, "DataManagement/Dispatcher").primary == (
        "dips://old:9135/DataManagement/Dispatcher",
    )


def test_new_layout_wins_over_old() -> None:
    config = load_dict(
        {
            "DIRAC": {"Setup": "Production", "Setups": {"Production": {"S": "Prod"}}},
            "Systems": {"S": {"URLs": {"C": "dips://new:1/S/C"}, "Prod": {"URLs": {"C": "dips://old:1/S/C"}}}},
        }
    )
    assert resolve_service_urls(config, "S/C").primary == ("dips://new:1/S/C",)
