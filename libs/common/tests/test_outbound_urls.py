"""Outbound URLs: non-public addresses refused when given and when sent to, against a real receiver."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from poise_common.outbound_urls import UnsafeUrl, check_url, outbound_client, refused_kind
from poise_devstack.recorder import RecordingServer

# (URL, the kind named in the refusal): every class of non-public address, written the ways a
# URL can write it.
REFUSED = [
    ("http://127.0.0.1:8765/metrics", "loopback"),
    ("http://127.0.0.1:1/", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://localhost:8000/hook", "loopback"),  # a name: resolved to be checked
    ("http://2130706433/", "loopback"),  # 127.0.0.1 as one number
    ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped IPv6
    ("http://[64:ff9b::7f00:1]/", "loopback"),  # NAT64 of 127.0.0.1
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.1.2.3/hook", "private"),
    ("https://172.16.0.1/hook", "private"),
    ("http://192.168.1.10/hook", "private"),
    ("http://[fd00::1]/hook", "private"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://100.64.0.1/", "non-public"),  # carrier-grade NAT
]


@pytest.fixture()
def receiver():
    with RecordingServer(status=lambda n: 204) as server:
        yield server


async def post(url: str, *, allow_private: bool) -> httpx.Response:
    async with outbound_client(timeout_s=5, allow_private=allow_private) as client:
        return await client.post(url, content=b"{}")


@pytest.mark.parametrize(("url", "kind"), REFUSED)
def test_non_public_addresses_are_refused_when_given(url, kind):
    with pytest.raises(UnsafeUrl, match=rf"\ba {kind} address; only public addresses are allowed"):
        check_url(url)
    assert check_url(url, allow_private=True) == url  # a single-host install may opt in


def test_public_addresses_and_names_that_do_not_resolve_yet_are_accepted():
    for url in ("https://93.184.215.14/hook", "http://[2606:4700:4700::1111]:8443/x", "https://ats.example/hook"):
        assert check_url(url) == url


@pytest.mark.parametrize("url", ["ftp://ats.example/hook", "https:///nohost", "http://[::1/", "hook"])
def test_what_is_not_an_http_url_is_refused(url):
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_private=True)


def test_a_name_resolving_to_loopback_is_refused_at_send_time_without_connecting(receiver):
    # The name passed whatever was checked when it was given; it resolves to loopback now.
    with pytest.raises(UnsafeUrl, match="its host resolves to a loopback address"):
        asyncio.run(post(f"http://localhost:{receiver.port}/hook", allow_private=False))
    with pytest.raises(UnsafeUrl, match="its host is a link-local address"):
        asyncio.run(post("http://169.254.169.254/latest/meta-data/", allow_private=False))
    assert receiver.requests == []


def test_the_request_goes_to_the_checked_address_with_the_urls_host_kept(receiver):
    response = asyncio.run(post(f"http://localhost:{receiver.port}/hook", allow_private=True))
    assert response.status_code == 204
    # Connected to the address resolved once, the Host header still the name in the URL.
    assert [r.headers["Host"] for r in receiver.requests] == [f"localhost:{receiver.port}"]
    assert str(response.request.url) == f"http://localhost:{receiver.port}/hook"


def test_a_name_that_does_not_resolve_is_a_connect_error_to_retry():
    with pytest.raises(httpx.ConnectError):
        asyncio.run(post("http://receiver.invalid/hook", allow_private=False))


def test_public_addresses_have_no_refusal():
    import ipaddress

    assert refused_kind(ipaddress.ip_address("93.184.215.14")) is None
    assert refused_kind(ipaddress.ip_address("2606:4700:4700::1111")) is None
    assert refused_kind(ipaddress.ip_address("2002:7f00:1::")) == "loopback"  # 6to4 of 127.0.0.1
