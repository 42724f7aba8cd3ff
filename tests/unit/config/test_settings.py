"""Service, security and DIRAC settings readers with DIRAC's defaults."""

from __future__ import annotations

import pytest

from rpcframework.config import (
    KNOWN_OPTIONS,
    SourceKind,
    dirac_setup,
    load_cfg_text,
    load_dict,
    read_security_settings,
    read_service_settings,
    virtual_organization,
)
from rpcframework.config.settings import describe_known_options
from rpcframework.errors import ConfigurationError

CFG = """
DIRAC
{
  Setup = Production
  VirtualOrganization = myvo
  Security
  {
    CertFile = /etc/grid-security/hostcert.pem
    KeyFile = /etc/grid-security/hostkey.pem
    CALocation = /etc/grid-security/certificates
  }
}
Systems
{
  DataManagement
  {
    Services
    {
      Dispatcher
      {
        Port = 9135
        Protocol = dips
        MaxThreads = 40
        Authorization
        {
          Default = authenticated
          next_file = NormalUser, group:dirac_user
          FileTransfer
          {
            FromClient = TrustedHost
          }
        }
      }
    }
  }
}
"""


def test_service_settings() -> None:
    settings = read_service_settings(load_cfg_text(CFG, "s.cfg"), "DataManagement/Dispatcher")
    assert settings.name == "DataManagement/Dispatcher"
    assert settings.section == "/Systems/DataManagement/Services/Dispatcher"
    assert (settings.port, settings.protocol, settings.max_threads, settings.max_waiting_petitions) == (
        9135,
        "dips",
        40,
        100,
    )
    assert settings.configured_rule("next_file") == ("NormalUser", "group:dirac_user")
    assert settings.configured_rule("FileTransfer/FromClient") == ("TrustedHost",)
    assert settings.configured_rule("ping") is None
    assert settings.default_rule == ("authenticated",)
    assert settings.sources["Port"].kind is SourceKind.CFG_FILE
    assert settings.sources["MaxWaitingPetitions"].kind is SourceKind.DEFAULT


def test_service_defaults() -> None:
    settings = read_service_settings(load_dict({}), "S/C")
    assert (settings.port, settings.protocol, settings.max_threads, settings.max_waiting_petitions) == (
        9876,
        "dips",
        15,
        100,
    )
    assert settings.default_rule is None and settings.authorization == {}


def test_service_old_layout() -> None:
    config = load_dict(
        {
            "DIRAC": {"Setup": "P", "Setups": {"P": {"S": "Prod"}}},
            "Systems": {"S": {"Prod": {"Services": {"C": {"Port": "1234"}}}}},
        }
    )
    settings = read_service_settings(config, "S/C")
    assert settings.section == "/Systems/S/Prod/Services/C"
    assert settings.port == 1234


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("Port", "70000", "between 0 and 65535"),
        ("Port", "x", "expected an integer"),
        ("Protocol", "https", "dips or dip"),
        ("MaxThreads", "0", "at least 1"),
        ("MaxWaitingPetitions", "-1", "at least 1"),
    ],
)
def test_bad_service_settings(option: str, value: str, message: str) -> None:
    config = load_dict({"Systems": {"S": {"Services": {"C": {option: value}}}}})
    with pytest.raises(ConfigurationError, match=message):
        read_service_settings(config, "S/C")


def test_empty_authorization_value_counts_as_unset() -> None:
    config = load_cfg_text("Systems\n{\nS\n{\nServices\n{\nC\n{\nAuthorization\n{\nm =\n}\n}\n}\n}\n}\n")
    assert read_service_settings(config, "S/C").configured_rule("m") is None


def test_security_and_dirac_settings() -> None:
    config = load_cfg_text(CFG)
    sec = read_security_settings(config)
    assert sec.cert_file == "/etc/grid-security/hostcert.pem"
    assert sec.key_file == "/etc/grid-security/hostkey.pem"
    assert sec.ca_location == "/etc/grid-security/certificates"
    assert not sec.use_server_certificate and not sec.skip_ca_checks
    assert dirac_setup(config) == "Production"
    assert virtual_organization(config) == "myvo"
    empty = load_dict({})
    assert read_security_settings(empty).cert_file is None
    assert (dirac_setup(empty), virtual_organization(empty)) == ("Test", "unknown")


def test_skip_ca_checks_never_with_server_certificate() -> None:
    config = load_dict({"DIRAC": {"Security": {"UseServerCertificate": True, "SkipCAChecks": "yes"}}})
    sec = read_security_settings(config)
    assert sec.use_server_certificate and not sec.skip_ca_checks
    config = load_dict({"DIRAC": {"Security": {"SkipCAChecks": "yes"}}})
    assert read_security_settings(config).skip_ca_checks


def test_known_options_describe_values_and_defaults() -> None:
    rows = {path: (value, source.kind) for path, value, source in describe_known_options(load_cfg_text(CFG))}
    assert rows["/DIRAC/Setup"] == ("Production", SourceKind.CFG_FILE)
    assert rows["/DIRAC/Security/UseServerCertificate"] == ("no", SourceKind.DEFAULT)
    assert all(opt.path.startswith("/") for opt in KNOWN_OPTIONS)
