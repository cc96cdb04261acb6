"""Per-run host bookkeeping: one probe per host, then all of the host's URLs go ahead or are deferred together.

Offline, every URL failing on its own would cost a DNS lookup or a connect timeout per try, minutes for a few
thousand URLs, and all of it again on the next run. So a failure that says the *host* cannot be reached (a
resolver error other than "no such host", a connect timeout, connection refused, network or host unreachable;
never an HTTP status, which proves the host answered) is handled per host: one URL probes the host and retries
with the in-run backoff while the host's other URLs wait without a slot; when the probe gives up, the host is
*down* for the rest of the run and each of its URLs, the waiting ones and those still to come, is deferred at
once (``HostDown``), with no further lookup or connect. Every host is probed that way before it is used: until
something answers from it, one request at a time goes to it.

Names that do not exist are remembered too (``not_found``): the host's other URLs fail at once, without a lookup.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rec_pipeline.images.failures import FetchFailure, HostDown, HostKey, host_label


class Probe:
    """One URL's claim on the hosts it is probing; released when that URL's download ends, however it ends."""

    __slots__ = ("hosts",)

    def __init__(self) -> None:
        self.hosts: set[HostKey] = set()


@dataclass
class HostState:
    """What this run knows about one host: ``up`` once anything answered, ``down`` once a probe gave up.

    While neither is settled, ``prober`` is the one URL allowed to talk to the host and ``settled`` wakes the
    others when it is done.
    """

    up: bool = False
    down: FetchFailure | None = None
    prober: Probe | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    deferred: int = 0


@dataclass
class Hosts:
    """Which hosts are up, down or being probed in this run, and which names do not exist.

    Kept in one place so the rule "one probe per host, then all or nothing" is written once; the transport reports
    what it saw (``reachable``, ``not_found``) and the retry loop asks and decides (``admit``, ``failed``,
    ``give_up``).
    """

    failed_lookups: dict[HostKey, FetchFailure] = field(default_factory=dict)
    states: dict[HostKey, HostState] = field(default_factory=dict)

    async def admit(self, key: HostKey, probe: Probe) -> None:
        """Return when ``probe``'s URL may talk to ``key``: the host is up, or this URL is its prober.

        Raises the recorded failure for a name that does not exist, ``HostDown`` for a host given up, and
        waits (holding no slot) while another URL probes the host.
        """
        while True:
            if key in self.failed_lookups:
                raise self.failed_lookups[key]
            state = self.states.setdefault(key, HostState())
            if state.down is not None:
                state.deferred += 1
                raise HostDown(key, state.down)
            if state.up or state.prober is probe:
                return
            if state.prober is None:
                self._claim(state, key, probe)
                return
            await state.settled.wait()

    def not_found(self, key: HostKey, failure: FetchFailure) -> FetchFailure:
        """``key``'s name does not exist: its other URLs get ``failure`` at once. Returns ``failure``."""
        self.failed_lookups[key] = failure
        return failure

    def failed(self, key: HostKey, probe: Probe) -> bool:
        """Record a host-level failure seen by ``probe``'s URL; True when that URL is (now) the host's prober.

        False means another URL already probes the host (or gave it up): its verdict decides, so this URL must
        not spend its own retries on the host.
        """
        state = self.states.setdefault(key, HostState())
        if state.down is None and state.prober is None:
            self._claim(state, key, probe)
        return state.prober is probe

    def reachable(self, key: HostKey) -> None:
        """Something answered from ``key`` (any HTTP status, a TLS error): its other URLs may go ahead."""
        state = self.states.setdefault(key, HostState())
        if not state.up:
            state.up = True
            self._settle(state)

    def give_up(self, key: HostKey, probe: Probe, cause: FetchFailure) -> HostDown:
        """The prober's last try failed too: the host is down for the rest of the run."""
        state = self.states[key]
        state.down = cause
        state.deferred += 1
        probe.hosts.discard(key)
        self._settle(state)
        return HostDown(key, cause)

    def release(self, probe: Probe) -> None:
        """``probe``'s URL is done without a verdict on some host (say a policy refusal): let the next URL probe."""
        for key in probe.hosts:
            state = self.states[key]
            if state.prober is probe:
                self._settle(state)
        probe.hosts.clear()

    def given_up(self) -> list[tuple[str, FetchFailure, int]]:
        """(host, why, URLs deferred) for each host given up in this run."""
        return [
            (host_label(key), state.down, state.deferred)
            for key, state in self.states.items()
            if state.down is not None
        ]

    def _claim(self, state: HostState, key: HostKey, probe: Probe) -> None:
        state.up = False
        state.prober = probe
        state.settled = asyncio.Event()
        probe.hosts.add(key)

    @staticmethod
    def _settle(state: HostState) -> None:
        state.prober = None
        state.settled.set()
