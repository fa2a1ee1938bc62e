"""The rclpy transport floor for one raw image: stamp -> subscriber callback, no node between.

    python bench/transport_probe.py sub --seconds 12 &   # prints p50/p95 as JSON at the end
    python bench/transport_probe.py pub --count 80 --rate 10

Both sides are plain rclpy (reliable, depth 10) with the environment's ROS_DOMAIN_ID and
Fast DDS profile; used by bench_node.py to say how much of the node's input delay any rclpy
subscriber pays for the same image.
"""

from __future__ import annotations

import argparse
import json
import struct
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

TOPIC = '/p3_transport_probe/image'
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def subscribe(seconds: float, skip: int = 5, raw: bool = False) -> dict:
    """Stamp -> callback delays; with `raw` the callback gets the CDR bytes (no conversion
    to a Python message) and reads the stamp from them."""
    node = rclpy.create_node('p3_transport_probe_sub')
    delays: list[float] = []

    def on_image(msg: Image | bytes) -> None:
        now = time.time_ns()
        if raw:  # CDR: 4-byte encapsulation, then header.stamp (int32 sec, uint32 nanosec)
            sec, nanosec = struct.unpack_from('<iI', msg, 4)
        else:
            sec, nanosec = msg.header.stamp.sec, msg.header.stamp.nanosec
        delays.append((now - (sec * 10 ** 9 + nanosec)) * 1e-6)

    node.create_subscription(Image, TOPIC, on_image, QOS, raw=raw)
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    d = delays[skip:]
    return {'received': len(delays),
            'delay_ms_p50': float(np.median(d)) if d else float('nan'),
            'delay_ms_p95': float(np.percentile(d, 95)) if d else float('nan')}


def publish(count: int, rate_hz: float, width: int, height: int, wait_s: float) -> None:
    node = rclpy.create_node('p3_transport_probe_pub')
    pub = node.create_publisher(Image, TOPIC, QOS)
    msg = Image(height=height, width=width, encoding='rgb8', step=3 * width,
                data=bytes(3 * width * height))
    t_end = time.monotonic() + wait_s
    while pub.get_subscription_count() == 0 and time.monotonic() < t_end:
        time.sleep(0.05)
    time.sleep(0.5)
    for _ in range(count):
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10 ** 9)
        pub.publish(msg)
        time.sleep(1.0 / rate_hz)
    node.destroy_node()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('mode', choices=('pub', 'sub'))
    parser.add_argument('--seconds', type=float, default=12.0, help='sub: listen this long')
    parser.add_argument('--keep-large-buffers', action='store_true',
                        help='tune glibc malloc as the node does (input.keep_large_buffers)')
    parser.add_argument('--raw', action='store_true',
                        help='sub: take serialised bytes (no conversion to a Python message)')
    parser.add_argument('--count', type=int, default=80, help='pub: images to send')
    parser.add_argument('--rate', type=float, default=10.0, help='pub: images per second')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    args = parser.parse_args()
    if args.keep_large_buffers:
        from perception_3dinn.ros.memory import keep_large_buffers

        keep_large_buffers()
    rclpy.init()
    try:
        if args.mode == 'sub':
            print(json.dumps(subscribe(args.seconds, raw=args.raw)), flush=True)
        else:
            publish(args.count, args.rate, args.width, args.height, wait_s=10.0)
    finally:
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
