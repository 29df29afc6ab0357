"""Network faults for the fault suite: a network namespace joined to this machine by a veth
pair, packet filters inside it (nftables), and a relay that adds latency to a TCP link.

Contract:
- `Netns.create()` makes the namespace and the pair under the caller's name (removing
  leftovers of the same name first), `remove()` takes both away; only traffic from and to
  the namespace crosses the pair, and the filters live in the namespace, so nothing else on
  the machine is touched;
- the machine's end of the pair holds `host_ip`, the namespace's end `ns_ip` (a /30 of
  10.231.0.0/16 chosen by `index`); a server that should be reachable from the namespace
  listens on `host_ip`;
- a process started with `exec_prefix()` in front of its command runs in the namespace;
- filters: `partition` drops a port's traffic both ways (or only the namespace's outgoing
  packets), `lose` drops a share of them at random; `heal()` removes every filter.

This kernel has no netem queueing discipline, so latency comes from `DelayRelay`, a TCP relay
on `host_ip` that holds every chunk sent by the namespace's side for a delay with jitter
(keeping their order) before passing it on; the answers pass at once, as with netem on
the namespace's egress. Setting up namespaces and filters needs root (CI runs as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import threading
import time
from dataclasses import dataclass

TABLE = "sensorpipe_faults"


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


@dataclass(frozen=True)
class Netns:
    name: str  # at most 12 characters: the veth names add 3
    index: int = 1  # picks the /30: 10.231.<index>.0

    @property
    def host_ip(self) -> str:
        return f"10.231.{self.index}.1"

    @property
    def ns_ip(self) -> str:
        return f"10.231.{self.index}.2"

    @property
    def _veth(self) -> tuple[str, str]:
        return f"{self.name}-h", f"{self.name}-n"

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def _in(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(*self.exec_prefix(), *cmd, check=check)

    def create(self) -> Netns:
        if len(self.name) > 12:
            raise ValueError(f"namespace name {self.name!r} is longer than 12 characters")
        self.remove()
        host, peer = self._veth
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", self.name)
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", host)
        _run("ip", "link", "set", host, "up")
        self._in("ip", "addr", "add", f"{self.ns_ip}/30", "dev", peer)
        self._in("ip", "link", "set", peer, "up")
        self._in("ip", "link", "set", "lo", "up")
        self._in("nft", "add", "table", "inet", TABLE)
        for chain, hook in (("out", "output"), ("in", "input")):
            spec = f"{{ type filter hook {hook} priority 0; policy accept; }}"
            self._in("nft", "add", "chain", "inet", TABLE, chain, spec)
        return self

    def remove(self) -> None:
        _run("ip", "netns", "del", self.name, check=False)
        _run("ip", "link", "del", self._veth[0], check=False)  # gone with the namespace, unless half-made

    def _rule(self, chain: str, *match: str) -> None:
        self._in("nft", "add", "rule", "inet", TABLE, chain, *match)

    def partition(self, port: int, *, one_sided: bool = False) -> None:
        """Drop the namespace's packets to `port` on the machine's side and, unless
        `one_sided`, the packets coming back from it."""
        self._rule("out", "ip", "daddr", self.host_ip, "tcp", "dport", str(port), "counter", "drop")
        if not one_sided:
            self._rule("in", "ip", "saddr", self.host_ip, "tcp", "sport", str(port), "counter", "drop")

    def lose(self, port: int, percent: int) -> None:
        """Drop `percent`% of the packets to and from `port`, each chosen at random."""
        rnd = ("numgen", "random", "mod", "100", "<", str(percent), "counter", "drop")
        self._rule("out", "ip", "daddr", self.host_ip, "tcp", "dport", str(port), *rnd)
        self._rule("in", "ip", "saddr", self.host_ip, "tcp", "sport", str(port), *rnd)

    def heal(self) -> None:
        for chain in ("out", "in"):
            self._in("nft", "flush", "chain", "inet", TABLE, chain)

    def dropped(self) -> int:
        """Packets the filters have dropped since they were set (their counters)."""
        out = self._in("nft", "list", "table", "inet", TABLE).stdout
        return sum(int(w) for line in out.splitlines() if "packets" in line for w in _after(line, "packets"))


def _after(line: str, word: str) -> list[str]:
    parts = line.split()
    return [parts[i + 1] for i, p in enumerate(parts[:-1]) if p == word]


class DelayRelay:
    """A TCP relay from `listen` to `target`, in a thread of its own, that delays the client's
    bytes by `delay_s` plus up to `jitter_s` either way (never reordering them)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], delay_s: float, jitter_s: float) -> None:
        self.listen, self.target = listen, target
        self.delay_s, self.jitter_s = delay_s, jitter_s
        self.rng = random.Random(0)
        self.chunks = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="delay-relay", daemon=True)

    def __enter__(self) -> DelayRelay:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the relay on {self.listen} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, *self.listen))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            with contextlib.suppress(RuntimeError):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            tr, tw = await asyncio.open_connection(*self.target)
        except OSError:
            w.close()
            return
        ask: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        answer: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        await asyncio.gather(
            self._hold(r, ask, delayed=True), self._release(ask, tw), self._hold(tr, answer), self._release(answer, w)
        )

    async def _hold(
        self, r: asyncio.StreamReader, held: asyncio.Queue[tuple[float, bytes] | None], *, delayed: bool = False
    ) -> None:
        """Read one side's bytes as they come; each chunk is due at once or, if `delayed`, a
        delay after its arrival (never before the chunk ahead of it)."""
        due = 0.0
        try:
            while data := await r.read(65536):
                if delayed:
                    jitter = self.rng.uniform(-self.jitter_s, self.jitter_s)
                    due = max(due, time.monotonic() + self.delay_s + jitter)
                    self.chunks += 1
                held.put_nowait((due, data))
        except (ConnectionError, OSError):
            pass
        finally:
            held.put_nowait(None)

    async def _release(self, held: asyncio.Queue[tuple[float, bytes] | None], w: asyncio.StreamWriter) -> None:
        try:
            while (item := await held.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()
