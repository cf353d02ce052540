"""``xdream record --lsl SPIKES``: spike counts per trial from Lab Streaming Layer streams.

Reads two LSL streams: the spikes (by name, or else by type) and the presenter's onset
markers (``xdream-markers`` by default; the format is in :mod:`rig_clients.lsl_markers`).
The spike stream is one of two kinds (:mod:`rig_clients.trial_counts` has the counting
rules):

- spike events: nominal rate 0 (irregular), 1 numeric channel; each sample is one spike,
  its value the channel index (0-based), its timestamp the spike time. How many channels
  there are comes from ``--channels N`` or the stream's ``desc/spike_channels`` (e.g.
  ``info.desc().append_child_value("spike_channels", "32")``);
- binned counts: a regular rate, one channel per recorded channel; each sample holds the
  counts of the bin that starts at its timestamp and lasts 1 / rate.

Every timestamp is mapped into this machine's LSL clock with its stream's clock offset
(``time_correction()``, re-estimated every 5 s), so that the spikes, the markers and the
recorder may each run on their own computer. Each trial's counts in the evoked and the
baseline window go to the server as ``responses`` once the spike stream has passed both
windows, in one message per session and generation, at most a second after the first is
ready (at once when no other trial is pending). The server keeps both counts and
subtracts the baseline itself (the session's ``subtract_baseline``).

The streams are pulled and counted in a thread of their own while the main thread sends:
a server that is away holds up the sending (the counts wait for their acknowledgement for
as long as the connection keeps trying), but must not hold up the pulling, since LSL keeps
what the inlets have not taken for a few minutes only (pylsl's ``max_buflen``, 360 s) and
drops the rest.

Refusals by the server are reported on stderr with its reason and recording goes on; the
exit status is 1 if any response was refused. Ctrl-C or SIGTERM stops it: the trials already
complete are sent, then the connection is closed with ``bye``.
"""

from __future__ import annotations

import contextlib
import math
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from protocol.errors import ConfigError
from protocol.messages import Response
from rig_clients.connection import Connection, RequestFailed
from rig_clients.lsl_markers import STREAM_NAME, BadMarker, Onset, parse_marker, require_pylsl
from rig_clients.record import Key
from rig_clients.recorder import Recorder
from rig_clients.trial_counts import (
    LATENCY_S,
    Counted,
    SpikeBins,
    SpikeBuffer,
    SpikeEvents,
    TrialCounter,
    Windows,
)

#: Most samples per pull from an inlet (pulls repeat until the inlet is drained).
CHUNK = 4096
#: Longest wait for a server message between two rounds of pulls: the loop's pace.
POLL_S = 0.02
#: Ready trials that are sent at once, without waiting for the flush interval.
BATCH_TRIALS = 100


def _say(text: str) -> None:
    print(f"xdream record: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class LslSettings:
    """What ``xdream record --lsl`` is told: streams, windows, channels, margins."""

    spikes: str
    markers: str = STREAM_NAME
    windows: Windows = field(default_factory=Windows)
    #: Recorded channels of an event stream (None: from its desc); must match a binned one.
    channels: int | None = None
    #: How late a spike or a marker may arrive (trial_counts.LATENCY_S).
    latency_s: float = LATENCY_S
    resolve_timeout_s: float = 10.0
    #: Longest wait before ready trials are sent.
    flush_s: float = 1.0

    def __post_init__(self) -> None:
        if self.channels is not None and self.channels < 1:
            raise ConfigError(f"--channels is at least 1, got {self.channels}", field="channels")
        if not (0 <= self.latency_s <= 60):
            raise ConfigError(f"--latency-s is 0 to 60 s, got {self.latency_s}", field="latency_s")


class Inlet(Protocol):
    """What :class:`ClockedInlet` uses of a ``pylsl.StreamInlet``."""

    def pull_chunk(self, timeout: float, max_samples: int) -> tuple[Any, Any]: ...

    def time_correction(self, timeout: float) -> float: ...


class ClockedInlet:
    """An inlet whose timestamps come out in this machine's LSL clock.

    LSL stamps samples in the sender's clock; ``time_correction()`` is the offset to add
    for ours. Two computers' clocks drift apart (crystals differ by tens of parts per
    million: tens of ms an hour), so the offset is estimated again every ``refresh_s``; an
    estimate that fails (the sender is briefly away) keeps the last one."""

    def __init__(
        self,
        inlet: Inlet,
        clock: Callable[[], float],
        refresh_s: float = 5.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.inlet = inlet
        self.refresh_s = refresh_s
        self._clock = clock
        #: Seconds to add to the stream's timestamps (the first estimate takes a few ms).
        self.offset: float = inlet.time_correction(timeout=timeout_s)
        self._estimated_at = clock()

    def pull(self) -> tuple[list[Any], np.ndarray]:
        """What has arrived (at most :data:`CHUNK` samples), with local timestamps."""
        if self._clock() - self._estimated_at >= self.refresh_s:
            self._estimated_at = self._clock()
            with contextlib.suppress(RuntimeError):  # pylsl's TimeoutError and LostError
                self.offset = self.inlet.time_correction(timeout=0.5)
        samples, stamps = self.inlet.pull_chunk(timeout=0.0, max_samples=CHUNK)
        return list(samples), np.asarray(stamps, dtype=np.float64) + self.offset

    def drain(self) -> Iterator[tuple[list[Any], np.ndarray]]:
        """Pull until the inlet has nothing more; non-empty chunks only."""
        while True:
            samples, stamps = self.pull()
            if len(stamps):
                yield samples, stamps
            if len(stamps) < CHUNK:
                return


#: What one round of pulling completes: its trials, and the clock they were complete by.
Round = tuple[list[Counted[Onset]], float]


class BackgroundCounting:
    """Calls ``count`` every ``pace_s`` in a thread of its own until the ``with`` block
    ends, keeping the rounds for :meth:`rounds`: the inlets are drained meanwhile, however
    long the main thread waits for the server. A failure is said at once (``say``): the
    main thread may be waiting for the server, and meanwhile nothing is pulled."""

    def __init__(
        self, count: Callable[[], Round], pace_s: float, say: Callable[[str], None] = _say
    ) -> None:
        self._count = count
        self._pace_s = pace_s
        self._say = say
        self._rounds: queue.SimpleQueue[Round] = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lsl-counting")

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._pace_s):
                self._rounds.put(self._count())
        except BaseException as exc:  # raised again in the main thread, by rounds()
            self._failure = exc
            self._say(f"counting the LSL streams stopped: {exc!r}; trials counted so far are "
                      "still sent, then the recorder exits")  # fmt: skip

    def rounds(self) -> list[Round]:
        """The rounds counted since the last call, oldest first. Once they are all taken,
        raises what ended the thread, if anything did (the recording cannot go on without
        its counts)."""
        taken: list[Round] = []
        with contextlib.suppress(queue.Empty):
            while True:
                taken.append(self._rounds.get_nowait())
        if not taken and self._failure is not None:
            raise self._failure
        return taken

    def __enter__(self) -> BackgroundCounting:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class LslRecording:
    """The loop: onsets and spikes in, counts out to the server."""

    def __init__(
        self,
        recorder: Recorder,
        markers: ClockedInlet,
        spikes: ClockedInlet,
        counter: TrialCounter[Onset],
        clock: Callable[[], float],
        flush_s: float = 1.0,
        say: Callable[[str], None] = _say,
    ) -> None:
        self.recorder = recorder
        self.markers = markers
        self.spikes = spikes
        self.counter = counter
        self.flush_s = flush_s
        self._clock = clock
        self._say = say
        self._warned: set[str] = set()
        self._ready: dict[Key, list[Response]] = {}
        self._ready_since = math.inf
        self.accepted = self.duplicates = self.refused = 0
        #: Markers that were not onsets of ours, and onsets that came too late to count.
        self.skipped = self.too_late = 0

    def _warn_once(self, problem: str, text: str) -> None:
        if problem not in self._warned:
            self._warned.add(problem)
            self._say(text)

    def step(self) -> None:
        """Take what the streams delivered, count the trials now complete, send if due."""
        self._send_due([self.count()])

    def count(self) -> Round:
        """Take what the streams delivered; the trials that are complete now."""
        for samples, stamps in self.markers.drain():
            for sample, stamp in zip(samples, stamps, strict=True):
                self._marker(str(sample[0]), float(stamp))
        for samples, stamps in self.spikes.drain():
            if self.counter.add_spikes(stamps, np.asarray(samples, dtype=np.float64)):
                rejects = self.counter.spikes.rejects
                self._warn_once(rejects, f"skipping {rejects} (warned once)")
        if self.counter.spikes.late:
            self._warn_once(
                "late spikes",
                f"spikes arrive more than {self.counter.latency_s} s after their time: trials "
                "already sent missed them; raise --latency-s (warned once)",
            )
        now = self._clock()
        return self.counter.complete(now), now

    def _send_due(self, rounds: Iterable[Round]) -> None:
        """Make the trials of ``rounds`` ready, and send what is ready if it is due."""
        for trials, completed in rounds:
            for trial in trials:
                self._take(trial, completed)
        now = self._clock()
        ready = sum(len(r) for r in self._ready.values())
        if ready and (
            ready >= BATCH_TRIALS
            or now - self._ready_since >= self.flush_s
            or not self.counter.pending
        ):
            self.flush()

    def _marker(self, text: str, stamp: float) -> None:
        try:
            onset = parse_marker(text, stamp)
        except BadMarker as exc:
            self.skipped += 1
            self._warn_once(exc.problem, f"skipping markers that are not xdream onsets: {exc}")
            return
        if onset is not None and not self.counter.add_trial(onset.time, onset):
            self.too_late += 1
            self._warn_once(
                "late onset",
                f"the onset of {onset.presentation_id} came more than "
                f"{self.counter.latency_s} s late: not counted (the server will present it "
                "again); raise --latency-s",
            )

    def _take(self, trial: Counted[Onset], now: float) -> None:
        onset, windows = trial.trial, self.counter.windows
        response = Response(
            presentation_id=onset.presentation_id,
            stimulus_id=onset.stimulus_id,
            counts=trial.evoked.tolist(),
            evoked_window_ms=windows.evoked_ms,
            baseline_counts=trial.baseline.tolist(),
            baseline_window_ms=windows.baseline_ms,
        )
        self._ready.setdefault((onset.session, onset.generation), []).append(response)
        self._ready_since = min(self._ready_since, now)

    def flush(self) -> None:
        """Send every ready trial, one message per session and generation. The server
        refuses a message as a whole: a refused one is sent again trial by trial, so that
        one bad marker (a wrong stimulus id) costs its own trial only."""
        for (session, generation), responses in self._ready.items():
            reason = self._send(session, generation, responses)
            if reason is None:
                continue
            refused = {reason: [r.presentation_id for r in responses]}
            if len(responses) > 1:
                refused = {}
                for response in responses:
                    reason = self._send(session, generation, [response])
                    if reason is not None:
                        refused.setdefault(reason, []).append(response.presentation_id)
            for reason, ids in refused.items():
                self.refused += len(ids)
                shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
                self._say(
                    f"{len(ids)} responses of session {session} generation {generation} "
                    f"refused ({shown}): {reason}"
                )
        self._ready.clear()
        self._ready_since = math.inf

    def _send(self, session: str, generation: int, responses: list[Response]) -> str | None:
        """Send; None once acknowledged, else the server's reason for refusing."""
        try:
            ack = self.recorder.send(session, generation, responses)
        except RequestFailed as exc:
            return str(exc)
        self.accepted += ack.accepted
        self.duplicates += ack.duplicates
        return None

    def run(self, stop: Callable[[], bool]) -> None:
        """Record until ``stop()``; then send what is complete. The streams are counted in
        the background (:class:`BackgroundCounting`), the connection used here only: its
        socket is not for two threads."""
        counting = BackgroundCounting(self.count, POLL_S, self._say)
        try:
            with counting:
                while not stop():
                    self._send_due(counting.rounds())
                    self.recorder.connection.poll(POLL_S)  # heartbeats; nothing else is for us
            self._send_due(counting.rounds())
            self.step()
        finally:  # what is complete goes out, also when counting failed
            self.flush()
        if self.counter.pending:
            self._say(f"{self.counter.pending} trials not complete at the end: not sent")

    def summary(self) -> str:
        return (
            f"{self.accepted} responses accepted, {self.duplicates} duplicates, "
            f"{self.refused} refused; {self.skipped} markers skipped, {self.too_late} onsets "
            f"too late, {self.counter.spikes.late} spikes late"
        )


def describe(info: Any) -> str:
    """One line about a stream, for the operator."""
    rate, channels = info.nominal_srate(), info.channel_count()
    return (
        f"{info.name()!r} (type {info.type()!r}, {channels} channel{'s' * (channels != 1)}, "
        f"{f'{rate:g} Hz' if rate > 0 else 'irregular'}, on {info.hostname()})"
    )


def _matches(seen: Sequence[Any], wanted: str) -> list[Any]:
    """The streams named ``wanted``, or else those of that type."""
    return [s for s in seen if s.name() == wanted] or [s for s in seen if s.type() == wanted]


def resolve(pylsl: ModuleType, wanted: Sequence[str], timeout_s: float) -> list[Any]:
    """One stream info per name (or type) in ``wanted``, waiting up to ``timeout_s`` for all
    of them; ConfigError naming what is missing or ambiguous and what LSL did see."""
    resolver = pylsl.ContinuousResolver()
    deadline = time.monotonic() + timeout_s
    while True:
        seen = resolver.results()
        found = {name: _matches(seen, name) for name in wanted}
        for name, streams in found.items():
            if len(streams) > 1:
                listed = "; ".join(f"{describe(s)} source_id {s.source_id()!r}" for s in streams)
                raise ConfigError(f"{len(streams)} LSL streams match {name!r}: {listed}")
        if all(found.values()):
            return [found[name][0] for name in wanted]
        if time.monotonic() >= deadline:
            missing = ", ".join(repr(name) for name, streams in found.items() if not streams)
            listed = "; ".join(describe(s) for s in seen) or "none"
            raise ConfigError(
                f"no LSL stream named (or of type) {missing} within {timeout_s:g} s. "
                f"Streams seen: {listed}"
            )
        time.sleep(0.1)


def spike_buffer(pylsl: ModuleType, info: Any, settings: LslSettings) -> SpikeBuffer:
    """The buffer for the spike stream ``info`` (a full info, with its desc): binned
    counts at a regular rate, spike events at rate 0."""
    if info.channel_format() == pylsl.cf_string:
        raise ConfigError(f"the spike stream {describe(info)} carries strings, not numbers")
    rate = info.nominal_srate()
    if rate > 0:
        if settings.channels not in (None, info.channel_count()):
            raise ConfigError(
                f"--channels {settings.channels}, but the binned stream {describe(info)} "
                f"has {info.channel_count()}"
            )
        return SpikeBins(info.channel_count(), rate)
    if info.channel_count() != 1:
        raise ConfigError(
            f"a spike event stream has one channel (the spike's channel index per sample); "
            f"{describe(info)} has {info.channel_count()}"
        )
    channels = settings.channels
    if channels is None:
        text = info.desc().child_value("spike_channels")
        if not text.strip().isdigit():
            raise ConfigError(
                f"how many channels does {describe(info)} record? Give --channels N "
                "(its desc has no spike_channels)"
            )
        channels = int(text)
    return SpikeEvents(channels, settings.latency_s)


def open_inlet(pylsl: ModuleType, info: Any, timeout_s: float) -> Any:
    """An inlet subscribed to ``info``: samples pushed from now on reach it."""
    inlet = pylsl.StreamInlet(info, recover=True)
    try:
        inlet.open_stream(timeout=timeout_s)
    except RuntimeError as exc:  # pylsl's TimeoutError, LostError
        raise ConfigError(f"could not subscribe to {describe(info)}: {exc}") from None
    return inlet


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C or SIGTERM (a second one interrupts at once, e.g.
    while the last counts wait for a server that is gone)."""
    stopping = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def main(settings: LslSettings, connection: Connection) -> int:
    """Count spikes from the LSL streams ``settings`` name and send them over
    ``connection`` until stopped; exit status 1 if the server refused any."""
    pylsl = require_pylsl()
    timeout = settings.resolve_timeout_s
    spikes_info, markers_info = resolve(pylsl, [settings.spikes, settings.markers], timeout)
    if markers_info.channel_format() != pylsl.cf_string or markers_info.channel_count() != 1:
        raise ConfigError(f"the marker stream {describe(markers_info)} is not 1 string channel")
    spikes_inlet = open_inlet(pylsl, spikes_info, timeout)
    markers_inlet = open_inlet(pylsl, markers_info, timeout)
    buffer = spike_buffer(pylsl, spikes_inlet.info(timeout=timeout), settings)
    try:
        spikes = ClockedInlet(spikes_inlet, pylsl.local_clock, timeout_s=timeout)
        markers = ClockedInlet(markers_inlet, pylsl.local_clock, timeout_s=timeout)
    except RuntimeError as exc:
        raise ConfigError(f"no clock offset from the LSL streams: {exc}") from None
    counter = TrialCounter[Onset](buffer, settings.windows, settings.latency_s)
    recording = LslRecording(
        Recorder(connection), markers, spikes, counter, pylsl.local_clock, settings.flush_s
    )
    connection.connect()
    try:
        kind = "binned" if isinstance(buffer, SpikeBins) else "events"
        (a, b), (c, d) = settings.windows.evoked_ms, settings.windows.baseline_ms
        _say(
            f"counting {describe(spikes_info)} as {kind} on {buffer.channels} channels at the "
            f"onsets of {describe(markers_info)}; evoked {a:g} to {b:g} ms, baseline {c:g} to "
            f"{d:g} ms, latency margin {settings.latency_s:g} s"
        )
        with stop_signals() as stopping:
            recording.run(stopping.is_set)
        _say(recording.summary())
    finally:
        connection.close()
    return 1 if recording.refused else 0
