"""Outbound URLs (webhooks, ATS callbacks): tenants choose them, so they may reach only public addresses.

Without a check, anyone who may register a URL could make the server call its own loopback
services, the cloud's metadata endpoint or the private network, and read the outcome back in a
delivery log: a probe of the server's network (server-side request forgery). So a URL is checked
twice: when it is given (:func:`check_url`, a clear refusal), and when each request is sent
(:class:`CheckedTransport`): the host is resolved then, every address it resolves to is checked,
and the connection goes to a checked address, never to a second lookup's answer, so a name that
resolves elsewhere later (DNS rebinding) gains nothing. ``allow_private`` lifts the refusal for a
single-host install whose receivers run beside it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Checked in this order: several flags hold at once (127.0.0.1 is also private), and the first
# one names the refusal.
_REFUSED_KINDS = (
    ("is_loopback", "loopback"),
    ("is_unspecified", "unspecified"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_reserved", "reserved"),
    ("is_private", "private"),
    ("is_site_local", "private"),  # IPv6 fec0::/10, deprecated but still routed by some networks
)
# IPv6 addresses that carry an IPv4 address a gateway will forward to: checked as that address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeUrl(ValueError):
    """A URL this server will not send to; the message says why, and names no address."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    embedded = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in embedded if a is not None]


def refused_kind(address: Address) -> str | None:
    """Why ``address`` is not a public one (loopback, private, ...), or None when it is."""
    # An IPv4 address carried inside an IPv6 one first: it names where the packets end up.
    candidates: list[Address] = [*_embedded_ipv4(address), address] if address.version == 6 else [address]
    for candidate in candidates:
        for flag, kind in _REFUSED_KINDS:
            if getattr(candidate, flag, False):
                return kind
        if not candidate.is_global:  # e.g. 100.64.0.0/10, shared by carrier-grade NAT
            return "non-public"
    return None


def _refusal(kind: str, *, resolved: bool) -> UnsafeUrl:
    subject = "its host resolves to" if resolved else "its host is"
    return UnsafeUrl(
        f"{subject} a {kind} address; only public addresses are allowed "
        "(POISE_FUSION__ALLOW_PRIVATE_TARGETS=true allows others, for a single-host install)"
    )


def parse_url(url: str) -> httpx.URL:
    """The URL as the sender will read it: http or https, with a host; else :class:`UnsafeUrl`."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise UnsafeUrl("it is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnsafeUrl("it must be http:// or https:// with a host")
    return parsed


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _resolved(infos: list[tuple]) -> list[str]:
    """The distinct addresses of getaddrinfo's answer, in its order."""
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_addresses(addresses: list[str], *, resolved: bool) -> None:
    """Refuse unless every address is public (one private answer is enough to refuse the name)."""
    for text in addresses:
        kind = refused_kind(ipaddress.ip_address(text.split("%", 1)[0]))
        if kind is not None:
            raise _refusal(kind, resolved=resolved)


def check_url(url: str, *, allow_private: bool = False) -> str:
    """``url`` when it may be sent to; :class:`UnsafeUrl` otherwise (blocking: it resolves the host).

    A host that does not resolve now is accepted: it is checked again, resolved, at each send.
    """
    parsed = parse_url(url)
    if allow_private:
        return url
    host = parsed.raw_host.decode("ascii")
    literal = _literal(host)
    if literal is not None:
        check_addresses([str(literal)], resolved=False)
        return url
    try:
        infos = socket.getaddrinfo(host, _port(parsed), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return url
    check_addresses(_resolved(infos), resolved=True)
    return url


class CheckedTransport(httpx.AsyncBaseTransport):
    """Sends each request to an address checked at that moment, the host name kept for TLS and Host.

    The host is resolved per request; a refused address raises :class:`UnsafeUrl` before any
    connection is made. The request then goes to the checked address (the first of the answer that
    accepts a connection), with the ``Host`` header and the TLS server name (SNI and certificate
    check) still the URL's host.
    """

    def __init__(self, *, allow_private: bool = False) -> None:
        self.allow_private = allow_private
        # No proxy from the environment: a proxy would resolve the name itself, after the check.
        self._inner = httpx.AsyncHTTPTransport(trust_env=False)

    async def _addresses(self, request: httpx.Request) -> list[str]:
        host = request.url.raw_host.decode("ascii")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, _port(request.url), type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpx.ConnectError("the host name did not resolve", request=request) from exc
        addresses = _resolved(infos)
        if not self.allow_private:
            check_addresses(addresses, resolved=_literal(host) is None)
        return addresses

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.raw_host.decode("ascii")
        addresses = await self._addresses(request)
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        named = request.url
        for index, address in enumerate(addresses):
            request.url = named.copy_with(host=address)
            try:
                return await self._inner.handle_async_request(request)
            except httpx.ConnectError:
                if index == len(addresses) - 1:
                    raise
            finally:
                request.url = named
        raise httpx.ConnectError("the host name resolved to no address", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def outbound_client(*, timeout_s: float, allow_private: bool = False) -> httpx.AsyncClient:
    """An HTTP client for tenant-chosen URLs: checked addresses only, no redirects, no proxy."""
    return httpx.AsyncClient(
        transport=CheckedTransport(allow_private=allow_private), timeout=timeout_s,
        follow_redirects=False, trust_env=False,
    )
