"""Stamp pairing, latest-wins hand-over and stamp checks of the node (no ROS needed)."""

from __future__ import annotations

import threading

import pytest

from perception_3dinn.ros.sync import LatestSlot, StampGuard, StampPairer

MS = 1_000_000


def test_pairs_equal_stamps_in_either_order() -> None:
    p = StampPairer(slop_ns=0, queue_size=5)
    assert p.add_image(100 * MS, 'img') is None
    assert p.add_detections(100 * MS, 'det') == (100 * MS, 'img', 'det')
    assert p.add_detections(200 * MS, 'det2') is None
    assert p.add_image(200 * MS, 'img2') == (200 * MS, 'img2', 'det2')
    assert p.stats.pairs == 2 and p.stats.unmatched == 0
    assert p.pending() == (0, 0)


def test_slop_bounds_the_stamp_difference() -> None:
    p = StampPairer(slop_ns=10 * MS)
    assert p.add_image(100 * MS, 'a') is None
    assert p.add_detections(111 * MS, 'far') is None  # 11 ms > 10 ms slop
    out = p.add_detections(109 * MS, 'near')
    assert out == (100 * MS, 'a', 'near')
    # The image stamp is the frame stamp even when the detections arrive second.
    assert out[0] == 100 * MS


def test_closest_partner_wins_and_older_items_are_dropped() -> None:
    p = StampPairer(slop_ns=30 * MS)
    for s in (100, 110, 120):
        p.add_detections(s * MS, f'd{s}')
    assert p.add_image(118 * MS, 'img') == (118 * MS, 'img', 'd120')
    # d100 and d110 can never pair with a newer image: counted as unmatched.
    assert p.stats.unmatched == 2
    assert p.pending() == (0, 0)


def test_queue_overflow_counts_drops() -> None:
    p = StampPairer(slop_ns=0, queue_size=3)
    for s in range(10):
        p.add_image(s * MS, s)
    assert p.pending() == (3, 0)
    assert p.stats.unmatched == 7
    p.reset()
    assert p.pending() == (0, 0)


def test_clock_jump_keeps_only_the_new_timeline() -> None:
    p = StampPairer(slop_ns=5 * MS)
    p.add_image(9000 * MS, 'old image')
    p.add_detections(100 * MS, 'new detections')  # arrived just before the jumped image
    p.drop_newer_than(100 * MS)
    assert p.pending() == (0, 1)
    assert p.add_image(100 * MS, 'new image') == (100 * MS, 'new image', 'new detections')


def test_bad_pairer_settings_raise() -> None:
    with pytest.raises(ValueError):
        StampPairer(slop_ns=-1)
    with pytest.raises(ValueError):
        StampPairer(slop_ns=0, queue_size=0)


def test_latest_slot_keeps_the_newest_and_counts_drops() -> None:
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.take(0.0) == 3
    assert slot.dropped == 2
    assert slot.take(0.01) is None


def test_latest_slot_wakes_a_waiting_worker() -> None:
    slot = LatestSlot()
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout_s=30.0)))
    worker.start()
    slot.put('frame')
    worker.join(timeout=30.0)
    assert got == ['frame']
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout_s=30.0)))
    worker.start()
    slot.close()
    worker.join(timeout=30.0)
    assert not worker.is_alive() and got[-1] is None


def test_stamp_guard_classifies_stamps() -> None:
    g = StampGuard(jump_threshold_ns=1000 * MS)
    assert g.check(5000 * MS) == 'ok'
    assert g.check(5000 * MS) == 'duplicate'
    assert g.check(4900 * MS) == 'out_of_order'
    assert g.last_ns == 5000 * MS  # an out-of-order stamp does not move the reference
    assert g.check(5100 * MS) == 'ok'
    assert g.check(100 * MS) == 'jump'  # a bag loop
    assert g.check(200 * MS) == 'ok'  # accepted after the jump
