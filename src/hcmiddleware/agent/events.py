"""Card and ward events pushed to the browser as Server-Sent Events.

The agent registers :class:`EventBridge` as a plugin on its Middleware: the card
monitor's ``hcm_card_inserted`` / ``hcm_card_removed`` and the ward's ``hcm_ward_alarm``
arrive on their own threads and are handed to every open ``/v1/events`` stream on the
server's event loop. Events carry no personal data: a reader name, an ATR, an alarm
(band, bed, kind, state).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from hcmiddleware.hookspecs import hookimpl
from hcmiddleware.models import Alarm

__all__ = ["EventBridge", "Subscription"]

_QUEUE = 256
_KEEPALIVE = 15.0


class Subscription:
    """One open stream: its queue, and which kinds of event it may see."""

    def __init__(self, loop: asyncio.AbstractEventLoop, kinds: frozenset[str]) -> None:
        self.loop = loop
        self.kinds = kinds
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(_QUEUE)

    def offer(self, kind: str, data: dict[str, Any]) -> None:
        """Called on the loop: queue the event (a stream too slow to keep up loses it)."""
        if kind in self.kinds and not self.queue.full():
            self.queue.put_nowait((kind, data))


class EventBridge:
    """The agent's own plugin: hook calls in, SSE streams out."""

    hcm_plugin_name = "agent-events"

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._closed = False
        #: the cards in the readers now (reader -> ATR), told to a stream as it opens;
        #: ``hcm agent serve`` sets it from its card events
        self.cards: Callable[[], dict[str, bytes]] | None = None

    # -- hooks (any thread) ------------------------------------------------------------

    @hookimpl
    def hcm_card_inserted(self, reader: str, atr: bytes) -> None:
        self.publish("card.inserted", {"reader": reader, "atr": atr.hex().upper()})

    @hookimpl
    def hcm_card_removed(self, reader: str) -> None:
        self.publish("card.removed", {"reader": reader})

    @hookimpl
    def hcm_ward_alarm(self, alarm: Alarm, change: str) -> None:
        self.publish("ward.alarm", {"change": change, "alarm": alarm.model_dump(mode="json")})

    # -- streams -----------------------------------------------------------------------

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Hand an event to every stream, on each stream's loop."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, kind, data)
            except RuntimeError:  # the loop is closed: the stream is gone
                self._drop(sub)

    def subscribe(self, kinds: frozenset[str]) -> Subscription:
        sub = Subscription(asyncio.get_running_loop(), kinds)
        with self._lock:
            self._subs.add(sub)
        return sub

    def _drop(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def close(self) -> None:
        """End every stream (at shutdown: a browser's stream must not hold it up)."""
        with self._lock:
            self._closed = True
            subs = list(self._subs)
        for sub in subs:
            with contextlib.suppress(RuntimeError, asyncio.QueueFull):
                sub.loop.call_soon_threadsafe(sub.queue.put_nowait, None)

    async def stream(self, kinds: frozenset[str]) -> AsyncIterator[bytes]:
        """``text/event-stream`` bytes until the client leaves or the agent stops."""
        sub = self.subscribe(kinds)
        try:
            yield b": hcm agent events\nretry: 3000\n\n"
            # a page opened (or reloaded) with a card already in the reader learns of it
            # now, not at the next insertion; taken after subscribing, so that nothing
            # happening meanwhile is missed (a card may then be told twice)
            if "card.inserted" in kinds and self.cards is not None:
                for reader, atr in sorted(self.cards().items()):
                    data = {"reader": reader, "atr": atr.hex().upper(), "present_at_connect": True}
                    yield f"event: card.inserted\ndata: {json.dumps(data)}\n\n".encode()
            while not self._closed:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), _KEEPALIVE)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if item is None:
                    break
                kind, data = item
                text = json.dumps(data, ensure_ascii=False)
                yield f"event: {kind}\ndata: {text}\n\n".encode()
        finally:
            self._drop(sub)
