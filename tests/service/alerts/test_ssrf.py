"""Webhook targets on internal addresses are refused unless their network is allowed."""

from __future__ import annotations

import ipaddress

import pytest

from service.alerts.ssrf import UnsafeTargetError, check_target, parse_networks


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",  # loopback
        "http://localhost/hook",  # a name that resolves to loopback
        "http://10.1.2.3/hook",  # private
        "https://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
        "http://224.0.0.1/hook",  # multicast
        "http://0.0.0.0/hook",  # unspecified
        "http://[::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",  # IPv4-mapped private
        "http://[fe80::1]/hook",
    ],
)
def test_internal_targets_are_refused_and_the_message_says_what_to_do(url: str) -> None:
    with pytest.raises(UnsafeTargetError, match=r"internal address.*ALLOWED_NETWORKS"):
        check_target(url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://93.184.216.34/hook", "http"),
        ("/relative/hook", "http"),
        ("http://user:pw@93.184.216.34/hook", "credentials"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ],
)
def test_malformed_targets_are_refused_with_the_reason(url: str, problem: str) -> None:
    with pytest.raises(UnsafeTargetError, match=problem):
        check_target(url)


def test_a_public_address_is_accepted() -> None:
    assert check_target("https://93.184.216.34/hook") == [ipaddress.ip_address("93.184.216.34")]


def test_an_allowed_network_lets_its_addresses_through_and_no_others() -> None:
    loopback = parse_networks(["127.0.0.0/8"])
    assert check_target("http://127.0.0.1:9000/hook", allowed_networks=loopback)
    with pytest.raises(UnsafeTargetError):
        check_target("http://10.0.0.1/hook", allowed_networks=loopback)


def test_a_malformed_allowed_network_setting_is_named() -> None:
    with pytest.raises(ValueError, match=r"webhook_allowed_networks.*CIDR"):
        parse_networks(["10.0.0.0/33"])
