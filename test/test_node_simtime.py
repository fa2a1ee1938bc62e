"""The real chair_detector with use_sim_time: a backward jump of /clock (a bag replayed in a
loop with --clock) resets the node's tracks, and frames keep being answered."""

from __future__ import annotations

from pathlib import Path

from builtin_interfaces.msg import Time
from node_harness import Harness, NodeProcess, running_node
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def node(ros_env: dict[str, str], install_prefix: Path, manifest: Path) -> NodeProcess:
    yield from running_node(ros_env, 'autostart:=true', 'use_sim_time:=true',
                            f'model.manifest:={manifest}')


def test_clock_jump_back_resets_tracks(node: NodeProcess) -> None:
    h = Harness()
    try:
        clock = h.node.create_publisher(Clock, '/clock',
                                        QoSProfile(depth=10,
                                                   reliability=ReliabilityPolicy.RELIABLE))
        now = {'sec': 100}
        # /clock is published continuously, as `ros2 bag play --clock` does (a best-effort
        # reader may miss the first messages while it matches this writer).
        h.node.create_timer(0.05, lambda: clock.publish(Clock(clock=Time(sec=now['sec']))))
        h.wait_inputs_matched()
        h.wait_for(lambda: clock.get_subscription_count() > 0)
        t, out = h.first_frame(100.0)
        first = out['objects'].objects[0].track_id
        h.send_frame(t + 0.1)
        assert h.frame_outputs(t + 0.1)['objects'].objects[0].track_id == first
        # The node's clock must have taken /clock = 100 s before it can jump back from it (its
        # best-effort /clock reader may still be matching): its /diagnostics carry that time.
        h.wait_for(lambda: any(d.header.stamp.sec == now['sec']
                               for d in h.received['diagnostics']))
        mark = len(node.lines)
        # The bag starts over: /clock goes back 95 s (stamps too, as in a looped bag).
        now['sec'] = 5
        h.wait_for(lambda: any('ROS clock jumped back' in ln for ln in node.lines[mark:]))
        # The next image still moves forward in stamp: only the /clock jump can have reset
        # the tracks, so a new track (ids are never reused) proves that path.
        h.send_frame(t + 0.2)
        after_clock = h.frame_outputs(t + 0.2)['objects'].objects[0].track_id
        assert after_clock != first
        h.send_frame(5.0)
        after = h.frame_outputs(5.0)['objects'].objects[0].track_id
        assert after not in (first, after_clock)
        assert node.alive()
    finally:
        h.close()
