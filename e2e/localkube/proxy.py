"""A TCP relay in front of the API server whose open connections can be made to go silent (the chaos suite's
stalled watch): after `stall()`, every connection open at that moment stays open but relays nothing more in
either direction, as a watch behind a broken load balancer or NAT does; connections opened later work.
TLS passes through untouched (the API server's certificate names 127.0.0.1, whatever the port)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class _Link:
    client: socket.socket
    upstream: socket.socket
    silent: threading.Event = field(default_factory=threading.Event)


class StallingProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1"):
        self.host, self.upstream_port = host, upstream_port
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="stalling-proxy").start()

    def stall(self) -> int:
        """Silence every connection open now; returns how many."""
        with self._lock:
            for link in self._links:
                link.silent.set()
            return len(self._links)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for link in self._links:
                for sock in (link.client, link.upstream):
                    with contextlib.suppress(OSError):
                        sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection((self.host, self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                self._links = [x for x in self._links if x.client.fileno() != -1]
                self._links.append(link)
            threading.Thread(target=self._relay, args=(link,), daemon=True, name="stalling-proxy-link").start()

    def _relay(self, link: _Link) -> None:
        pair = {link.client: link.upstream, link.upstream: link.client}
        try:
            while not self._closed.is_set():
                if link.silent.is_set():  # open and silent until the proxy closes
                    self._closed.wait()
                    return
                readable, _, _ = select.select(list(pair), [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            if not link.silent.is_set() or self._closed.is_set():
                for sock in pair:
                    with contextlib.suppress(OSError):
                        sock.close()
