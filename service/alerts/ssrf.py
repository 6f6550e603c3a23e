"""Webhook targets must be public: refuse URLs that resolve to internal addresses (SSRF).

A subscriber chooses the URL the service will POST to, so without this check anyone with a key
could make the service call its own database port, a cloud metadata endpoint or an intranet
admin page. Every address a host name resolves to is checked, at subscription time and again
right before each delivery (DNS answers change). Redirects are never followed by the delivery
client, so a public URL cannot bounce a request inward either.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from service.errors import InvalidInputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnsafeTargetError(InvalidInputError):
    """A webhook URL that is malformed or points at a private, loopback or special address."""


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
    except ValueError as error:
        raise ValueError(f"webhook_allowed_networks: {error}; use CIDR like 10.0.0.0/8") from error


def is_internal(address: IPAddress) -> bool:
    """Private, loopback, link-local, multicast, reserved or unspecified: not a public host."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_internal(address.ipv4_mapped)
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def check_target(url: str, *, allowed_networks: Sequence[IPNetwork] = ()) -> list[IPAddress]:
    """The addresses `url` resolves to, if every one of them may be called; else raise.

    Raises
    ------
    UnsafeTargetError
        The URL is not http(s) with a host, the host does not resolve, or it resolves to an
        internal address that no entry of `allowed_networks` covers.
    """
    host, port = _host_and_port(url)
    addresses = _resolve(host, port)
    for address in addresses:
        if is_internal(address) and not any(address in net for net in allowed_networks):
            raise UnsafeTargetError(
                f"webhook URL {url!r} resolves to {address}, an internal address: use a public "
                "receiver, or have an administrator allow its network in "
                "TIANXUN_WEBHOOK_ALLOWED_NETWORKS"
            )
    return addresses


def _host_and_port(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise UnsafeTargetError(f"webhook URL {url!r} is not a valid URL: {error}") from error
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTargetError(
            f"webhook URL {url!r} must be an absolute http:// or https:// URL with a host"
        )
    if parts.username or parts.password:
        raise UnsafeTargetError(
            f"webhook URL {url!r} carries credentials: verify deliveries by their signature instead"
        )
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeTargetError(
            f"webhook host {host!r} does not resolve ({error}): check the spelling"
        ) from error
    # Scoped IPv6 addresses come back as 'fe80::1%eth0'; the scope is not part of the address.
    return sorted(
        {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}, key=str
    )
