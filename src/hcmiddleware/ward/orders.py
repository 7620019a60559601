"""The stays' orders as the HIS last gave them, kept for a short while (in memory).

A nurse scans the band (the handheld downloads the stay's orders), then the drug's
label a few seconds later: without a store each scan would ask the HIS for the same
orders again. The store keeps each order with the moment the HIS said it, and answers
only while that is younger than ``[ward] orders_fresh_for``. It learns orders when the
ward fetches a stay's orders (the stay's whole list, replacing what it had) and when the
HIS pushes orders (:meth:`Ward.receive_orders`: merged one by one); it forgets an order
once it is executed, since the HIS changes it then.

What it answers is never the last word on whether an order may be carried out: the
check before execution (:meth:`Ward.begin`) asks the HIS afresh every time, so an order
cancelled or completed in the HIS a moment ago is refused there. See ``docs/ward.md``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from hcmiddleware.models import Order

__all__ = ["OrderStore"]


class OrderStore:
    """Orders by stay (``visit_id``), each with when the HIS said it; thread-safe."""

    #: stays kept at most; the stalest go first (a ward has a few dozen beds)
    MAX_STAYS = 4096

    def __init__(self, fresh_for: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.fresh_for = fresh_for
        self._clock = clock
        self._stays: dict[str, dict[str, tuple[Order, float]]] = {}
        self._lock = threading.Lock()
        #: answers given from the store and lookups it could not answer
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """Does the store keep anything (``orders_fresh_for`` above zero)?"""
        return self.fresh_for > 0

    def fetched(self, admission_id: str, orders: Iterable[Order]) -> None:
        """The stay's whole list, just fetched from the HIS: it replaces what was kept."""
        if not self.enabled:
            return
        now = self._clock()
        kept = {o.order_id: (o, now) for o in orders if o.visit_id == admission_id}
        with self._lock:
            self._stays.pop(admission_id, None)
            self._stays[admission_id] = kept
            self._trim(now)

    def pushed(self, orders: Iterable[Order]) -> int:
        """Orders the HIS pushed: each replaces the kept copy of itself. How many were kept."""
        if not self.enabled:
            return 0
        now = self._clock()
        count = 0
        with self._lock:
            for order in orders:
                stay = self._stays.pop(order.visit_id, {})  # to the end: filled last
                stay[order.order_id] = (order, now)
                self._stays[order.visit_id] = stay
                count += 1
            self._trim(now)
        return count

    def find(self, admission_id: str, order_id: str) -> Order | None:
        """The stay's order as the HIS said it less than ``fresh_for`` seconds ago."""
        if not self.enabled:
            return None
        with self._lock:
            found = self._stays.get(admission_id, {}).get(order_id)
            if found is not None and self._clock() - found[1] < self.fresh_for:
                self.hits += 1
                return found[0]
            self.misses += 1
            return None

    def forget(self, admission_id: str, order_id: str | None = None) -> None:
        """Drop one order of the stay (it was executed), or the whole stay."""
        with self._lock:
            if order_id is None:
                self._stays.pop(admission_id, None)
            else:
                self._stays.get(admission_id, {}).pop(order_id, None)

    def clear(self) -> None:
        """Forget every order."""
        with self._lock:
            self._stays.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(orders) for orders in self._stays.values())

    def _trim(self, now: float) -> None:
        """Drop what went stale, then the least recently filled stays over the limit."""
        for admission_id in [
            a
            for a, orders in self._stays.items()
            if all(now - at >= self.fresh_for for _, at in orders.values())
        ]:
            del self._stays[admission_id]
        while len(self._stays) > self.MAX_STAYS:
            del self._stays[next(iter(self._stays))]
