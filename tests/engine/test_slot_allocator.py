from __future__ import annotations

import time

import pytest

from sgnb.engine.slot_allocator import SlotAllocator


def test_slot_zero_is_reserved_and_never_handed_out() -> None:
    alloc = SlotAllocator(8)
    assert alloc.num_slots == 8
    assert alloc.num_free == 7
    slots = alloc.alloc(7)
    assert slots is not None and sorted(slots) == list(range(1, 8))
    assert alloc.num_free == 0
    assert alloc.alloc(1) is None


def test_first_allocations_get_lowest_ids_in_order() -> None:
    alloc = SlotAllocator(10)
    assert alloc.alloc(3) == [1, 2, 3]
    assert alloc.alloc(2) == [4, 5]


def test_alloc_is_all_or_nothing() -> None:
    alloc = SlotAllocator(5)
    assert alloc.alloc(2) is not None
    assert not alloc.can_alloc(3)
    assert alloc.alloc(3) is None
    assert alloc.num_free == 2  # nothing was taken by the failed call
    assert alloc.can_alloc(2)
    assert alloc.alloc(0) == []


def test_freed_slots_are_reused() -> None:
    alloc = SlotAllocator(4)
    a = alloc.alloc(3)
    assert a is not None
    alloc.free(a[:2])
    b = alloc.alloc(2)
    assert b is not None and sorted(b) == sorted(a[:2])
    alloc.check_integrity(used=[*b, a[2]])


def test_a_freed_run_comes_back_in_its_order() -> None:
    alloc = SlotAllocator(20)
    first, run, last = alloc.alloc(2), alloc.alloc(6), alloc.alloc(3)
    alloc.free(run)
    assert alloc.alloc(6) == run == list(range(3, 9))      # consecutive again: attention reads it as a view
    alloc.check_integrity(used=[*first, *run, *last])


def test_double_free_raises() -> None:
    alloc = SlotAllocator(6)
    slots = alloc.alloc(2)
    assert slots is not None
    alloc.free(slots)
    with pytest.raises(ValueError, match="double free of slot"):
        alloc.free([slots[0]])


def test_duplicate_in_one_free_call_raises_and_frees_nothing() -> None:
    alloc = SlotAllocator(6)
    slots = alloc.alloc(3)
    assert slots is not None
    with pytest.raises(ValueError, match="double free"):
        alloc.free([slots[0], slots[1], slots[0]])
    assert alloc.num_free == 2  # rolled back
    alloc.check_integrity(used=slots)


def test_free_out_of_range_or_reserved_slot_raises() -> None:
    alloc = SlotAllocator(6)
    alloc.alloc(5)
    with pytest.raises(ValueError, match="out of range"):
        alloc.free([6])
    with pytest.raises(ValueError, match="out of range"):
        alloc.free([-1])
    with pytest.raises(ValueError, match="reserved padding slot"):
        alloc.free([0])
    assert alloc.num_free == 0


def test_bad_sizes_raise_value_error() -> None:
    with pytest.raises(ValueError, match="num_slots must be >= 2"):
        SlotAllocator(1)
    with pytest.raises(ValueError, match="negative"):
        SlotAllocator(4).alloc(-1)


def test_check_integrity_detects_leaked_slot() -> None:
    alloc = SlotAllocator(10)
    slots = alloc.alloc(4)
    assert slots is not None
    alloc.check_integrity(used=slots)
    with pytest.raises(AssertionError, match=r"1 slot\(s\) leaked.*\[%d\]" % slots[3]):
        alloc.check_integrity(used=slots[:3])


def test_check_integrity_detects_double_counted_slots() -> None:
    alloc = SlotAllocator(10)
    slots = alloc.alloc(2)
    assert slots is not None
    free_one = alloc.alloc(1)
    assert free_one is not None
    alloc.free(free_one)
    with pytest.raises(AssertionError, match=f"slot {free_one[0]} is double-counted: it is both free and used"):
        alloc.check_integrity(used=[*slots, free_one[0]])
    with pytest.raises(AssertionError, match=f"slot {slots[0]} is double-counted: it appears twice"):
        alloc.check_integrity(used=[*slots, slots[0]])
    with pytest.raises(AssertionError, match="out of the usable range"):
        alloc.check_integrity(used=[*slots, 0])


def test_alloc_and_free_of_1000_slots_take_microseconds() -> None:
    alloc = SlotAllocator(100_001)
    timings = []
    for _ in range(50):
        t0 = time.perf_counter()
        slots = alloc.alloc(1000)
        assert slots is not None
        alloc.free(slots)
        timings.append(time.perf_counter() - t0)
    timings.sort()
    # Typically ~50 us; a per-slot O(n) scan of the free list would take tens of ms.
    assert timings[len(timings) // 2] < 2e-3
