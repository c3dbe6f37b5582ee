"""KV-pool slot allocator.

One slot holds one token's K and V in every layer. Slot 0 is reserved as a padding slot (padded
positions of a batch write there) and is never handed out, so the usable slots are
``1 .. num_slots - 1``.

The free slots live in a Python list used as a stack plus a ``bytearray`` of per-slot flags, so
``alloc``/``free`` are list slicing plus one flag write per slot, and a double free or a foreign slot
is caught without any set lookups. Plain Python, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable

_FREE = 1
_USED = 0


class SlotAllocator:
    """Hands out KV slot ids; never partially: an allocation either fits entirely or returns None."""

    __slots__ = ("num_slots", "_free_stack", "_is_free")

    def __init__(self, num_slots: int) -> None:
        if not isinstance(num_slots, int) or isinstance(num_slots, bool):
            raise TypeError(f"num_slots must be an int, got {type(num_slots).__name__}")
        if num_slots < 2:
            raise ValueError(f"num_slots must be >= 2 (slot 0 is reserved for padding), got {num_slots}")
        self.num_slots = num_slots  # total, including the reserved slot 0
        # Popped from the end: reversed so that the first allocations get the lowest ids.
        self._free_stack: list[int] = list(range(num_slots - 1, 0, -1))
        # _is_free[s] == 1 iff s is on the free stack; slot 0 is permanently "used".
        self._is_free = bytearray([_FREE]) * num_slots
        self._is_free[0] = _USED

    @property
    def num_free(self) -> int:
        return len(self._free_stack)

    @property
    def num_usable(self) -> int:
        """Slots that can ever be handed out (num_slots - 1)."""
        return self.num_slots - 1

    def can_alloc(self, n: int) -> bool:
        return 0 <= n <= len(self._free_stack)

    def is_free(self, slot: int) -> bool:
        if not 0 <= slot < self.num_slots:
            raise ValueError(f"slot {slot} out of range [0, {self.num_slots})")
        return self._is_free[slot] == _FREE

    def alloc(self, n: int) -> list[int] | None:
        """Returns ``n`` distinct free slot ids, or None if fewer than ``n`` are free."""
        if n < 0:
            raise ValueError(f"cannot allocate a negative number of slots ({n})")
        stack = self._free_stack
        if n > len(stack):
            return None
        if n == 0:
            return []
        out = stack[-n:]
        del stack[-n:]
        out.reverse()
        is_free = self._is_free
        for s in out:
            is_free[s] = _USED
        return out

    def free(self, slots: Iterable[int]) -> None:
        """Returns slots to the pool. Atomic: on a bad slot nothing is freed and ValueError is raised."""
        slots = slots if isinstance(slots, list) else list(slots)
        is_free = self._is_free
        num_slots = self.num_slots
        for i, s in enumerate(slots):
            if not 0 < s < num_slots or is_free[s] != _USED:
                for t in slots[:i]:  # roll back the flags set so far
                    is_free[t] = _USED
                if not 0 <= s < num_slots:
                    raise ValueError(f"cannot free slot {s}: out of range [1, {num_slots})")
                if s == 0:
                    raise ValueError("cannot free slot 0: it is the reserved padding slot")
                raise ValueError(f"double free of slot {s}: it is already free")
            is_free[s] = _FREE
        # pushed in reverse: the next allocation pops them in their old order, so a run of consecutive
        # slots comes back as one (attention reads such a run as a view instead of gathering it)
        self._free_stack.extend(reversed(slots))

    def check_integrity(self, used: Iterable[int] = ()) -> None:
        """Asserts that the free slots and ``used`` partition the usable slots exactly.

        Raises AssertionError naming the problem: leaked slots (neither free nor used), slots counted
        twice (free and used, used twice, free twice) or slots out of range.
        """
        n = self.num_slots
        # 0 = unaccounted, 1 = free, 2 = used
        seen = bytearray(n)
        for s in self._free_stack:
            if seen[s]:
                raise AssertionError(f"slot {s} is on the free list twice")
            seen[s] = 1
        if seen != self._is_free:
            bad = next(i for i in range(n) if seen[i] != self._is_free[i])
            raise AssertionError(f"free flag of slot {bad} disagrees with the free list")
        for s in used:
            if not 0 < s < n:
                raise AssertionError(f"used slot {s} is out of the usable range [1, {n})")
            if seen[s] == 1:
                raise AssertionError(f"slot {s} is double-counted: it is both free and used")
            if seen[s] == 2:
                raise AssertionError(f"slot {s} is double-counted: it appears twice in used")
            seen[s] = 2
        num_leaked = seen.count(0) - 1  # slot 0 is never accounted for
        if num_leaked:
            leaked = [i for i in range(1, n) if seen[i] == 0]
            raise AssertionError(
                f"{num_leaked} slot(s) leaked (neither free nor used): {leaked[:10]}"
                + (" ..." if num_leaked > 10 else "")
            )

    def __repr__(self) -> str:
        return f"SlotAllocator(num_slots={self.num_slots}, num_free={self.num_free})"
