"""A TCP forwarder on loopback that gives every connection a round-trip time.

Loopback answers in microseconds, so on it a client that waits for each reply
loses nothing by waiting; on a real link each wait costs a round trip. Linux's
netem would delay packets in the kernel, but not every kernel has it (this
project's machines do not), so a bench puts this proxy between a client and its
server instead: each chunk read from one side is written to the other half a
round trip later, in order, in both directions. What it does not imitate:
bandwidth, loss, and the slow start of a new connection (a real handshake costs a
round trip more; here connecting is free, which favours a client that opens many).

The proxy runs an asyncio loop in a thread of the bench. It uses some CPU on the
same cores as the tools it carries, more for a tool that writes many small chunks;
so read its results as ratios between tools measured through the same proxy.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import statistics
import threading
import time
from types import TracebackType

# What one read takes from a socket: a message of the benches fits whole.
CHUNK_OCTETS = 64 * 1024
# Chunks held per direction before the proxy stops reading that side (TCP's own
# flow control then holds the sender): bounds memory whatever a client sends.
MAX_CHUNKS_IN_FLIGHT = 256
# Waiting for the loop thread to listen, or to stop.
THREAD_START_SECONDS = 5.0
THREAD_STOP_SECONDS = 5.0
# Round trips measured by ``measured_round_trip``: a median of this many.
PROBE_ROUND_TRIPS = 21
PROBE_TIMEOUT_SECONDS = 10.0


class DelayProxy:
    """``with DelayProxy(target_port, rtt_seconds) as proxy:`` connect to ``proxy.port``."""

    def __init__(self, target_port: int, rtt_seconds: float) -> None:
        self.target_port = target_port
        self.one_way_seconds = rtt_seconds / 2
        self.port = 0
        # select(), not the default epoll: epoll_wait takes its timeout in whole
        # milliseconds and Python rounds it up, so each half round trip of 0.5 ms
        # slept 1 ms and a 1 ms round trip came out as 2.7 ms. select() takes
        # microseconds; the proxy carries a handful of sockets, far below FD_SETSIZE.
        self._loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        # The connections being carried, cancelled at the stop so none outlives the loop.
        self._carrying: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        if not self._ready.wait(THREAD_START_SECONDS) or not self.port:
            raise RuntimeError("the delay proxy did not start listening")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stopped = self._stopped
        if stopped is not None:
            self._loop.call_soon_threadsafe(stopped.set)
        self._thread.join(THREAD_STOP_SECONDS)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._ready.set()  # a start that failed must not leave __enter__ waiting
            self._loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._carry, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stopped.wait()
            server.close()
            for task in self._carrying:
                task.cancel()
            await asyncio.gather(*self._carrying, return_exceptions=True)

    async def _carry(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # a connection handler runs as a task
        self._carrying.add(task)
        try:
            await self._carry_both_ways(client_in, client_out)
        except asyncio.CancelledError:
            # Only the proxy's stop cancels a connection. Ended here, not raised: on
            # 3.11 asyncio's stream callback would report a cancelled handler as an
            # unhandled exception.
            return
        finally:
            self._carrying.discard(task)
            client_out.close()

    async def _carry_both_ways(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            return
        for writer in (client_out, server_out):
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(
                self._one_way(client_in, server_out), self._one_way(server_in, client_out)
            )
        except OSError:
            pass  # a side reset the connection: the other side is closed below
        finally:
            server_out.close()

    async def _one_way(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Copy ``source`` to ``sink``, each chunk ``one_way_seconds`` after it was read;
        the end of ``source`` reaches ``sink`` as late (a half close, as TCP has it)."""
        # (when due, chunk); an empty chunk is the end of the stream.
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_CHUNKS_IN_FLIGHT)

        async def read() -> None:
            while True:
                try:
                    chunk = await source.read(CHUNK_OCTETS)
                except OSError:
                    chunk = b""
                await chunks.put((time.monotonic() + self.one_way_seconds, chunk))
                if not chunk:
                    return

        async def write() -> None:
            while True:
                due, chunk = await chunks.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not chunk:
                    if sink.can_write_eof():
                        sink.write_eof()
                    return
                sink.write(chunk)
                await sink.drain()

        reader = asyncio.ensure_future(read())
        try:
            await write()
        finally:
            reader.cancel()


def measured_round_trip(port: int) -> float:
    """The median seconds between an SMTP command sent to ``port`` and its reply.

    Through the proxy this shows the round trip it adds, so a reader can see it is
    the one asked for (the server's own answer takes microseconds on loopback).
    """
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_SECONDS) as probe:
        probe.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies = probe.makefile("rb")
        replies.readline()  # the greeting
        for _ in range(PROBE_ROUND_TRIPS):
            started = time.perf_counter()
            probe.sendall(b"NOOP\r\n")
            if not replies.readline().startswith(b"250"):
                raise RuntimeError("the server behind the delay proxy did not answer NOOP")
            times.append(time.perf_counter() - started)
        probe.sendall(b"QUIT\r\n")
    return statistics.median(times)
