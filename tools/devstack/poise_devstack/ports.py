"""Free TCP ports on 127.0.0.1 and waiting for a listener."""

from __future__ import annotations

import socket
import time

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks it (bind to port 0); the socket is closed again, so another process could
    still take the port before the caller binds it. That race is accepted for tests.
    """
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports on 127.0.0.1.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out one port twice.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((LOCALHOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 30.0, interval: float = 0.1) -> None:
    """Block until ``host:port`` accepts a TCP connection.

    Raises:
        TimeoutError: nothing accepted a connection within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if port_accepts(host, port):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing accepted connections on {host}:{port} within {timeout:g} s")
        time.sleep(interval)
