"""`enforcer.gcpause`: the collector paused around bulk work, and long-lived heaps frozen out of
its passes without freezing garbage with them."""

from __future__ import annotations

import gc
import weakref

from enforcer.gcpause import keep_out_of_collections, paused_gc


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_paused_gc_restores_the_collector_only_if_it_was_on() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_freezing_collects_first_so_no_cycle_is_kept_for_ever() -> None:
    gc.collect()
    garbage = _Node()  # a cycle that only the collector can free
    gone = weakref.ref(garbage)
    alive = _Node()
    del garbage
    gc.disable()
    try:
        keep_out_of_collections()
        assert gone() is None, "the cycle was frozen instead of freed"
        assert gc.get_freeze_count() > 0  # what is alive is out of the passes
        del alive
    finally:
        gc.unfreeze()
        gc.enable()
