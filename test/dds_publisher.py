"""Publisher process for the DDS round-trip tests.

    python test/dds_publisher.py SEED TYPE [TYPE ...]

Publishes ``ros_messages.sample(TYPE, SEED + i)`` once per type on ``/p3test/<pkg>_<Name>``
with reliable, transient-local QoS (late subscribers still get it), prints READY, then
keeps spinning until stdin closes or it is killed.
"""

from __future__ import annotations

from pathlib import Path
import sys
import threading

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ros_messages import message_class, sample  # noqa: E402


def topic_for(full_name: str) -> str:
    pkg, _, name = full_name.split('/')
    return f'/p3test/{pkg}_{name}'


def main() -> None:
    seed, types = int(sys.argv[1]), sys.argv[2:]
    rclpy.init()
    node = rclpy.create_node('p3test_publisher')
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pubs = []
    for i, full_name in enumerate(types):
        cls = message_class(full_name)
        pub = node.create_publisher(cls, topic_for(full_name), qos)
        pub.publish(sample(cls, seed + i))
        pubs.append(pub)
    print('READY', flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set() and rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == '__main__':
    main()
