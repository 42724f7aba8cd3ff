"""The settings tree: .cfg and TOML give the same answers, typed getters, sections, merge and source tracking."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpcframework.config import (
    ConfigTree,
    SourceKind,
    ValueSource,
    load_cfg_text,
    load_dict,
    load_file,
    load_toml_text,
)
from rpcframework.errors import ConfigurationError

CFG_TEXT = """
DIRAC
{
  Setup = Production
  VirtualOrganization = myvo
  Security
  {
    CertFile = /etc/grid-security/hostcert.pem
    KeyFile = /etc/grid-security/hostkey.pem
    UseServerCertificate = yes
  }
}
Systems
{
  DataManagement
  {
    URLs
    {
      Dispatcher = dips://h1.example.org:9135/DataManagement/Dispatcher, dips://h2.example.org:9135/DataManagement/Dispatcher
    }
    Services
    {
      Dispatcher
      {
        Port = 9135
        MaxThreads = 20
        Authorization
        {
          Default = authenticated
          next_file = NormalUser, group:dirac_user
        }
      }
    }
  }
}
Registry
{
  BannedIPs = 192.0.2.1, 198.51.100.0/24
}
"""

TOML_TEXT = """
[DIRAC]
Setup = "Production"
VirtualOrganization = "myvo"

[DIRAC.Security]
CertFile = "/etc/grid-security/hostcert.pem"
KeyFile = "/etc/grid-security/hostkey.pem"
UseServerCertificate = true

[Systems.DataManagement.URLs]
Dispatcher = ["dips://h1.example.org:9135/DataManagement/Dispatcher", "dips://h2.example.org:9135/DataManagement/Dispatcher"]

[Systems.DataManagement.Services.Dispatcher]
Port = 9135
MaxThreads = 20

[Systems.DataManagement.Services.Dispatcher.Authorization]
Default = "authenticated"
next_file = ["NormalUser", "group:dirac_user"]

[Registry]
BannedIPs = "192.0.2.1, 198.51.100.0/24"
"""

QUESTIONS = [
    ("get_str", "/DIRAC/Setup"),
    ("get_str", "/DIRAC/Security/CertFile"),
    ("get_bool", "/DIRAC/Security/UseServerCertificate"),
    ("get_int", "/Systems/DataManagement/Services/Dispatcher/Port"),
    ("get_int", "/Systems/DataManagement/Services/Dispatcher/MaxThreads"),
    ("get_list", "/Systems/DataManagement/URLs/Dispatcher"),
    ("get_list", "/Systems/DataManagement/Services/Dispatcher/Authorization/next_file"),
    ("get_list", "/Registry/BannedIPs"),
]


def _ask(tree: ConfigTree, getter: str, path: str) -> object:
    if getter == "get_int":
        return tree.get_int(path, -1)
    if getter == "get_bool":
        return tree.get_bool(path, False)
    return getattr(tree, getter)(path)


@pytest.fixture
def cfg_tree() -> ConfigTree:
    return load_cfg_text(CFG_TEXT, "sample.cfg")


@pytest.fixture
def toml_tree() -> ConfigTree:
    return load_toml_text(TOML_TEXT, "sample.toml")


@pytest.mark.parametrize(("getter", "path"), QUESTIONS)
def test_cfg_and_toml_give_the_same_answers(
    cfg_tree: ConfigTree, toml_tree: ConfigTree, getter: str, path: str
) -> None:
    assert _ask(cfg_tree, getter, path) == _ask(toml_tree, getter, path)


def test_same_sections_and_options(cfg_tree: ConfigTree, toml_tree: ConfigTree) -> None:
    for path in ("/", "/DIRAC", "/Systems/DataManagement", "/Systems/DataManagement/Services/Dispatcher"):
        assert set(cfg_tree.sections(path)) == set(toml_tree.sections(path))
        assert set(cfg_tree.options(path)) == set(toml_tree.options(path))


def test_values(cfg_tree: ConfigTree) -> None:
    assert cfg_tree.get("/DIRAC/Setup") == "Production"
    assert cfg_tree.get("DIRAC/Setup") == "Production"  # leading slash optional
    assert cfg_tree.get("/DIRAC/Nope") is None
    assert cfg_tree.get("/DIRAC/Nope", "x") == "x"
    assert cfg_tree.get("/DIRAC") is None  # a section is not a value
    assert cfg_tree.get_list("/Systems/DataManagement/URLs/Dispatcher") == (
        "dips://h1.example.org:9135/DataManagement/Dispatcher",
        "dips://h2.example.org:9135/DataManagement/Dispatcher",
    )
    assert cfg_tree.get_int("/Systems/DataManagement/Services/Dispatcher/MaxWaitingPetitions", 100) == 100
    assert cfg_tree.sections("/Systems/DataManagement") == ("URLs", "Services")
    assert cfg_tree.options("/DIRAC") == ("Setup", "VirtualOrganization")
    assert cfg_tree.has_section("/DIRAC/Security") and not cfg_tree.has_section("/DIRAC/Setup")
    assert cfg_tree.has_option("/DIRAC/Setup")


def test_get_section_is_relative(cfg_tree: ConfigTree) -> None:
    svc = cfg_tree.get_section("/Systems/DataManagement/Services/Dispatcher")
    assert svc.get_int("Port", 0) == 9135
    assert svc.get_list("/Authorization/next_file") == ("NormalUser", "group:dirac_user")
    assert cfg_tree.get_section("/Nope").sections() == ()
    with pytest.raises(ConfigurationError, match="option, not a section"):
        cfg_tree.get_section("/DIRAC/Setup")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("yes", True), ("No", False), ("TRUE", True), ("false", False), ("y", True), ("n", False), ("1", True)],
)
def test_get_bool_dirac_words(raw: str, expected: bool) -> None:
    tree = load_dict({"A": {"B": raw}})
    assert tree.get_bool("/A/B", not expected) is expected


def test_bad_typed_values_name_the_path_and_source() -> None:
    tree = load_cfg_text("A\n{\n  N = many\n  B = perhaps\n}\n", "bad.cfg")
    with pytest.raises(ConfigurationError, match=r"/A/N: expected an integer, got 'many' \(from cfg file bad.cfg\)"):
        tree.get_int("/A/N", 1)
    with pytest.raises(ConfigurationError, match="yes/no/true/false"):
        tree.get_bool("/A/B", False)


def test_empty_values_count_as_unset() -> None:
    tree = load_cfg_text("A\n{\n  N =\n  L =\n}\n")
    assert tree.get_int("/A/N", 7) == 7
    assert tree.get_str("/A/N", "d") == "d"
    assert tree.get_list("/A/L") == ()


def test_list_trims_whitespace_and_drops_empty_items() -> None:
    tree = load_cfg_text("A\n{\n  L =  a ,b,, c  ,\n}\n")
    assert tree.get_list("/A/L") == ("a", "b", "c")


def test_cfg_append_operator() -> None:
    tree = load_cfg_text("A\n{\n  L = a\n  L += b\n}\n")
    assert tree.get_list("/A/L") == ("a", "b")


def test_merge_later_wins_and_sections_merge(cfg_tree: ConfigTree) -> None:
    extra = load_dict({"DIRAC": {"Setup": "Dev", "Extra": "1"}}, "override")
    merged = cfg_tree.merge(extra)
    assert merged.get("/DIRAC/Setup") == "Dev"
    assert merged.get("/DIRAC/VirtualOrganization") == "myvo"
    assert merged.get("/DIRAC/Extra") == "1"
    assert cfg_tree.get("/DIRAC/Setup") == "Production"  # the inputs are untouched
    assert merged.option("/DIRAC/Setup").source == ValueSource(SourceKind.DICT, "override")  # type: ignore[union-attr]


def test_source_tracking_items(tmp_path: Path) -> None:
    cfg = tmp_path / "a.cfg"
    cfg.write_text("DIRAC\n{\n  Setup = A\n}\n")
    toml = tmp_path / "b.toml"
    toml.write_text('[DIRAC]\nVirtualOrganization = "vo"\n')
    tree = load_file(cfg).merge(load_file(toml))
    rows = {path: (value, source) for path, value, source in tree.items()}
    assert rows["/DIRAC/Setup"] == ("A", ValueSource(SourceKind.CFG_FILE, str(cfg)))
    assert rows["/DIRAC/VirtualOrganization"] == ("vo", ValueSource(SourceKind.TOML_FILE, str(toml)))
    assert str(rows["/DIRAC/Setup"][1]) == f"cfg file {cfg}"
    value, source = tree.get_with_source("/DIRAC/Missing", "dflt")
    assert (value, source.kind) == ("dflt", SourceKind.DEFAULT)


def test_cfg_and_toml_equal_as_trees(cfg_tree: ConfigTree, toml_tree: ConfigTree) -> None:
    # Only the spelling of lists and booleans differs (TOML lists are joined with ", "; true becomes "yes").
    assert cfg_tree.as_dict()["DIRAC"]["Setup"] == toml_tree.as_dict()["DIRAC"]["Setup"]


def test_parse_errors_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"broken\.cfg:1: section 'A' is never closed"):
        load_cfg_text("A\n{\n  B = 1\n", "broken.cfg")
    with pytest.raises(ConfigurationError, match="cannot parse TOML"):
        load_toml_text("[A\n", "broken.toml")
    with pytest.raises(ConfigurationError, match="cannot read configuration file"):
        load_file(tmp_path / "missing.cfg")


def test_dict_rejects_bad_names_and_values() -> None:
    with pytest.raises(ConfigurationError, match="invalid name"):
        load_dict({"A/B": "x"})
    with pytest.raises(ConfigurationError, match="unsupported value type"):
        load_dict({"A": object()})


def test_cached_builds_once_per_snapshot(cfg_tree: ConfigTree) -> None:
    calls: list[int] = []

    def factory(tree: ConfigTree) -> int:
        calls.append(1)
        return len(list(tree.items()))

    assert cfg_tree.cached("k", factory) == cfg_tree.cached("k", factory)
    assert len(calls) == 1
