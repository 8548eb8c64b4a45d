"""The locked storage proxy's guards: the token check and the TLS front (:mod:`tuner.storage._proxy` uses them).

- :class:`TokenCheck`: a gRPC server interceptor. Every call of both services (Optuna's ``StorageService``
  and tuner's ``TunerProxy``) must carry ``authorization: Bearer <token>`` (compared in constant time);
  any other call is answered ``UNAUTHENTICATED`` ("no token" / "wrong token") and logged in one line:
  the peer, the method, why, never a token.
- :class:`TlsFront`: TLS on the proxy's port (Python's ``ssl``, TLS 1.2+, HTTP/2 by ALPN), passing each
  client's decrypted bytes to the gRPC server on 127.0.0.1. The front, not gRPC's C core, does the
  handshake so that the proxy can say, in one log line with the peer's address, why it dropped a
  connection: a plain-text client (answered, in HTTP/2, with ``UNAUTHENTICATED`` "serves TLS only", so
  the client prints one clear line instead of waiting) or a client that broke off the handshake because
  it does not trust the proxy's certificate. It costs about 0.3 ms per call (docs/distributed.md).
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
import ssl
import threading
from typing import Any, Callable, Optional

import grpc

from tuner.errors import TunerError
from tuner.storage._grpc import ENV_CA, ENV_TOKEN, REFUSED_NO_TOKEN, REFUSED_PLAIN_TEXT, REFUSED_WRONG_TOKEN

HANDSHAKE_S = 10.0  # a client that has not finished its TLS handshake by then is dropped
_log = logging.getLogger("tuner.storage._proxy")  # the proxy's log lines, wherever the code lives


class TokenCheck(grpc.ServerInterceptor):
    """Refuses (``UNAUTHENTICATED``) every call of either service without ``authorization: Bearer <token>``,
    with one log line per refused call: the peer, the method and why, never a token."""

    def __init__(self, token: str, peer_of: Callable[[str], str]) -> None:
        self._digest = hashlib.sha256(f"Bearer {token}".encode("utf-8")).digest()
        self._peer_of = peer_of

    def intercept_service(self, continuation: Callable, details: Any) -> Any:
        sent = next((v for k, v in (details.invocation_metadata or ()) if k == "authorization"), None)
        if sent is not None:
            text = sent if isinstance(sent, str) else sent.decode("utf-8", "replace")
            # same-length digests: the comparison takes as long for any wrong token
            if hmac.compare_digest(hashlib.sha256(text.encode("utf-8")).digest(), self._digest):
                return continuation(details)
        reason = REFUSED_NO_TOKEN if sent is None else REFUSED_WRONG_TOKEN
        method = details.method

        def refuse(request: Any, context: Any) -> None:
            hint = f" (the client must set ${ENV_TOKEN} to this proxy's token)" if sent is None else ""
            _log.warning("refused a call to %s from %s: %s%s", method, self._peer_of(context.peer()), reason, hint)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

        return grpc.unary_unary_rpc_method_handler(refuse)  # every method of both services is unary


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The proxy's TLS settings: ``cert`` (PEM, the server certificate with its chain) and ``key`` (PEM,
    unencrypted); TLS 1.2 or later, HTTP/2 by ALPN (gRPC clients require it). One-line TunerError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TunerError(f"{flag} {path}: {exc.strerror or exc}; give a readable PEM file") from None
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")  # never prompts for a passphrase
    except ssl.SSLError as exc:
        raise TunerError(f"cannot serve TLS with --tls-cert {cert} and --tls-key {key} ({exc.reason or exc}): give the "
                         "server certificate (PEM, its chain after it) and its private key (PEM, unencrypted)") from None
    context.set_alpn_protocols(["h2"])
    return context


def _h2_int(value: int, bits: int = 7) -> bytes:
    """An HPACK integer with a ``bits``-bit prefix (RFC 7541 5.1)."""
    top = (1 << bits) - 1
    if value < top:
        return bytes([value])
    out, value = [top], value - top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _h2_first_stream(data: bytes) -> Optional[int]:
    """The stream of the first HEADERS frame a plain-text HTTP/2 client sent in ``data``, if complete."""
    pos = len(_H2_PREFACE)
    while pos + 9 <= len(data):
        length, kind = int.from_bytes(data[pos:pos + 3], "big"), data[pos + 3]
        stream = int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF
        if kind == 0x1 and stream:
            return stream
        pos += 9 + length
    return None


def _h2_refusal(stream: int, message: str) -> bytes:
    """A gRPC ``UNAUTHENTICATED`` answer (trailers only) on ``stream``, then GOAWAY: what a plain-text
    client is told by a proxy that serves TLS only."""
    def literal(name: bytes, value: bytes) -> bytes:  # literal header field without indexing, new name
        return b"\x00" + _h2_int(len(name)) + name + _h2_int(len(value)) + value

    block = (b"\x88" + literal(b"content-type", b"application/grpc") + literal(b"grpc-status", b"16")
             + literal(b"grpc-message", message.replace("%", "%25").encode("ascii", "replace")))
    return (_h2_frame(0x4, 0x1, 0, b"")  # SETTINGS ack
            + _h2_frame(0x1, 0x5, stream, block)  # HEADERS, END_STREAM | END_HEADERS
            + _h2_frame(0x7, 0x0, 0, stream.to_bytes(4, "big") + b"\x00\x00\x00\x00"))  # GOAWAY, NO_ERROR


def _show(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _handshake_reason(exc: BaseException) -> str:
    """Why a client's TLS handshake failed, in words an operator can act on."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"no TLS handshake within {HANDSHAKE_S:.0f}s"
    reason = str(getattr(exc, "reason", "") or "")
    if any(mark in reason for mark in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return (f"the client does not trust this proxy's certificate ({reason.lower()}); give it the CA file that "
                f"signed the certificate in ${ENV_CA}")
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError) and "EOF" not in reason:
        return f"TLS handshake failed ({reason.lower() or str(exc).splitlines()[0][:160]})"
    return (f"the client hung up during the TLS handshake ({type(exc).__name__}), as a client does that does not "
            f"trust this proxy's certificate; give it the CA file that signed the certificate in ${ENV_CA}")


class _Relay(asyncio.Protocol):
    """One end of a relayed connection (the client's TLS one, or the one to the gRPC server): what it
    receives is written to the other end; a full buffer on one end pauses reading on the other."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: Any = None
        self.other: Optional["_Relay"] = None
        self.closed: asyncio.Future = loop.create_future()
        self._early: list[bytes] = []  # received before the other end was connected

    def link(self, other: "_Relay") -> None:
        self.other = other
        for data in self._early:
            other.transport.write(data)
        self._early.clear()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.other is not None:
            self.other.transport.write(data)
        else:
            self._early.append(data)

    def eof_received(self) -> bool:
        if self.other is not None:
            self.other.close()
        return False  # close this end too

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.other is not None:
            self.other.close()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        if self.other is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None:
            self.other.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class TlsFront:
    """TLS on the proxy's port: each client's TLS connection is passed on, decrypted, to the gRPC server on
    127.0.0.1:``upstream``; refused connections are logged with the peer's address. One event-loop thread.

    ``peer_of(grpc_peer)``: the client behind a connection the gRPC server sees from this front (for the
    token check's log lines)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, upstream: int) -> None:
        self._context = context
        self._upstream = upstream
        self._peers: dict[int, str] = {}  # the front's local port towards gRPC -> the client's address
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self._sock = socket.create_server(address[:2], family=family, backlog=1024)
        self._sock.setblocking(False)
        self.port = int(self._sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task] = set()
        self._thread = threading.Thread(target=self._run, daemon=True, name="proxy-tls")
        self._thread.start()

    def peer_of(self, grpc_peer: str) -> str:
        port = grpc_peer.rsplit(":", 1)[-1]
        known = self._peers.get(int(port)) if port.isdigit() else None
        return known or grpc_peer.split(":", 1)[-1]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(lambda loop, ctx: _log.debug("TLS front: %s", ctx.get("message")))
        self._spawn(self._accept())
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self) -> None:
        while True:
            conn, address = await self._loop.sock_accept(self._sock)
            self._spawn(self._serve(conn, _show(address)))

    async def _first_bytes(self, conn: socket.socket) -> bytes:
        """The client's first bytes, left unread (TLS starts with 0x16; plain-text HTTP/2 with its preface)."""
        ready = self._loop.create_future()
        self._loop.add_reader(conn.fileno(), lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, HANDSHAKE_S)
        finally:
            self._loop.remove_reader(conn.fileno())
        return conn.recv(len(_H2_PREFACE), socket.MSG_PEEK)

    async def _serve(self, conn: socket.socket, peer: str) -> None:
        try:
            first = await self._first_bytes(conn)
        except (asyncio.TimeoutError, OSError):
            conn.close()
            return
        if not first:  # a port check: connected and closed
            conn.close()
            return
        if first[0] != 0x16:
            await self._refuse_plain_text(conn, peer, first)
            return
        client = _Relay(self._loop)
        try:
            await self._loop.connect_accepted_socket(lambda: client, conn, ssl=self._context,
                                                     ssl_handshake_timeout=HANDSHAKE_S)
        except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
            _log.warning("refused a TLS connection from %s: %s", peer, _handshake_reason(exc))
            conn.close()
            return
        upstream = _Relay(self._loop)
        try:
            transport, _ = await self._loop.create_connection(lambda: upstream, "127.0.0.1", self._upstream)
        except OSError as exc:
            _log.warning("cannot pass the connection from %s to the gRPC server (%s)", peer, exc)
            client.close()
            return
        local = int(transport.get_extra_info("sockname")[1])
        self._peers[local] = peer
        try:
            client.link(upstream)
            upstream.link(client)
            await asyncio.gather(client.closed, upstream.closed)
        finally:
            client.close()
            upstream.close()
            self._peers.pop(local, None)

    async def _refuse_plain_text(self, conn: socket.socket, peer: str, first: bytes) -> None:
        """Log it and, for a plain-text gRPC client, answer its first call with UNAUTHENTICATED in HTTP/2."""
        is_h2 = first.startswith(_H2_PREFACE[:len(first)])
        what = "a plain-text gRPC (grpc://) connection" if is_h2 else "a connection that is not TLS"
        _log.warning("refused %s from %s: %s (clients use grpcs://)", what, peer, REFUSED_PLAIN_TEXT)
        try:
            if is_h2:
                data = b""
                await self._loop.sock_sendall(conn, _h2_frame(0x4, 0x0, 0, b""))  # the server's SETTINGS
                stream = None
                while stream is None and len(data) < (1 << 16):
                    chunk = await asyncio.wait_for(self._loop.sock_recv(conn, 1 << 16), HANDSHAKE_S)
                    if not chunk:
                        break
                    data += chunk
                    stream = _h2_first_stream(data) if data.startswith(_H2_PREFACE) else None
                if stream is not None:
                    await self._loop.sock_sendall(conn, _h2_refusal(stream, f"{REFUSED_PLAIN_TEXT}: use grpcs://"))
                    conn.shutdown(socket.SHUT_WR)
                    with contextlib.suppress(asyncio.TimeoutError):  # let the client read it before closing
                        while await asyncio.wait_for(self._loop.sock_recv(conn, 1 << 16), 2.0):
                            pass
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        async def cancel() -> None:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._loop.stop()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(cancel(), self._loop)
            self._thread.join(timeout=5)
        self._sock.close()
