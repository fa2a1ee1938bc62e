"""The real chair_detector on compressed images under malformed input: codecs the `format`
does not name, formats it cannot decode, garbage, and decompression bombs, whose cost the
node's own memory report (/diagnostics `memory.peak_rss_mb`) shows stayed bounded.

One node process for the module (input.compressed); tests run in file order.
"""

from __future__ import annotations

import functools
from pathlib import Path
import struct
from typing import Any
import zlib

import cv2
from fuzz_inputs import good
from node_harness import (
    camera_info_msg,
    chair_image,
    detections_msg,
    Harness,
    NodeProcess,
    running_node,
)
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
from test_node_fuzz import sane_objects, totals, wait_total

pytestmark = pytest.mark.ros

# A bomb may cost the node this much memory above what it had before (decoding the 20000 x
# 20000 PNG below would cost 1.2 GB).
MAX_RSS_GROWTH_MB = 100.0


@pytest.fixture(scope='module')
def node(ros_env: dict[str, str], install_prefix: Path, manifest: Path) -> NodeProcess:
    yield from running_node(ros_env, 'autostart:=true', f'model.manifest:={manifest}',
                            'diagnostics.period_s:=0.2', 'input.compressed:=true',
                            'input.image_qos_reliability:=reliable')


@pytest.fixture(scope='module')
def harness(node: NodeProcess) -> Harness:
    h = Harness()
    h.pub_compressed = h.node.create_publisher(
        CompressedImage, '/camera/image_raw/compressed',
        QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    h.wait_for(lambda: h.pub_compressed.get_subscription_count() > 0)
    h.wait_for(lambda: h.pub_info.get_subscription_count() > 0)
    h.wait_for(lambda: h.subs['objects'].get_publisher_count() > 0)
    yield h
    h.close()


def _encoded(ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(chair_image()[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


@functools.cache
def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of width x height black pixels: some 50 KB that decode to 1.2 GB of
    RGB (made row by row, never holding the image)."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed pixels
    z = zlib.compressobj(9)
    idat = b''.join(z.compress(row) for _ in range(height)) + z.flush()
    return (b'\x89PNG\r\n\x1a\n'
            + _png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0))
            + _png_chunk(b'IDAT', idat) + _png_chunk(b'IEND', b''))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) was rewritten to announce width x height."""
    data = bytearray(_encoded('.jpg'))
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def send(harness: Harness, t: float, data: bytes, fmt: str) -> None:
    harness.pub_info.publish(camera_info_msg(t))
    harness.pub_det.publish(detections_msg(t))
    msg = CompressedImage(format=fmt, data=data)
    msg.header = good(t).image.header
    harness.pub_compressed.publish(msg)


def test_jpeg_is_answered(harness: Harness) -> None:
    t = 10.0
    for k in range(30):  # the first frames may come before the reader matched
        send(harness, t + 0.01 * k, _encoded('.jpg'), 'jpeg')
        try:
            assert len(sane_objects(harness, t + 0.01 * k)) == 1
            return
        except AssertionError:
            continue
    raise AssertionError('no answer to a good JPEG frame')


@pytest.mark.parametrize('fmt,ext', [('jpeg', '.png'), ('rgb8; png compressed bgr8', '.jpg'),
                                     ('x-garbage/\u00e4', '.jpg')])
def test_codec_is_taken_from_the_data_with_a_counted_warning(
        fmt: str, ext: str, harness: Harness, node: NodeProcess) -> None:
    t = 20.0 + len(harness.received['objects'])
    before = totals(harness).get('total.mismatch.image_format', 0.0)
    send(harness, t, _encoded(ext), fmt)
    assert len(sane_objects(harness, t)) == 1
    assert wait_total(harness, 'mismatch.image_format', before) == before + 1
    # The warning is throttled per kind: the first of these cases logs it.
    line = harness.wait_for(lambda: next((ln for ln in node.lines
                                          if 'does not name its data' in ln), None))
    assert 'WARN' in line


@pytest.mark.parametrize('name,fmt,data', [
    ('bmp labelled jpeg', 'jpeg', _encoded('.bmp')),
    ('depth image', '16UC1; compressedDepth png', _encoded('.png')),
    ('garbage', 'jpeg', bytes(range(256)) * 10),
    ('empty', 'png', b''),
])
def test_what_cannot_be_decoded_is_refused(name: str, fmt: str, data: bytes,
                                           harness: Harness) -> None:
    t = 40.0 + len(harness.received['objects'])
    before = totals(harness).get('total.bad.image', 0.0)
    send(harness, t, data, fmt)
    assert wait_total(harness, 'bad.image', before) == before + 1
    assert harness.with_stamp('objects', t) == []
    send(harness, t + 0.5, _encoded('.jpg'), 'jpeg')
    assert len(sane_objects(harness, t + 0.5)) == 1


@pytest.mark.parametrize('name,make,fmt', [
    ('png 20000 x 20000', png_bomb, 'png'),
    # under Pillow's own refusal (179 MP): only the node's header check keeps it out
    ('png 12000 x 12000', lambda: png_bomb(12000, 12000), 'png'),
    ('jpeg header 60000 x 60000', lambda: jpeg_claiming(60000, 60000), 'jpeg'),
])
def test_decompression_bomb_is_refused_from_its_header(name: str, make: Any, fmt: str,
                                                       harness: Harness) -> None:
    t = 60.0 + len(harness.received['objects'])
    start = totals(harness)
    send(harness, t, make(), fmt)
    after_count = wait_total(harness, 'bad.camera_info_size',
                             start.get('total.bad.camera_info_size', 0.0))
    assert after_count == start.get('total.bad.camera_info_size', 0.0) + 1
    send(harness, t + 0.5, _encoded('.jpg'), 'jpeg')
    assert len(sane_objects(harness, t + 0.5)) == 1
    peak = totals(harness)['memory.peak_rss_mb']
    assert peak < start['memory.peak_rss_mb'] + MAX_RSS_GROWTH_MB, (start, peak)


def test_bomb_behind_a_matching_camera_info_is_refused_too(harness: Harness) -> None:
    """A camera_info that announces the bomb's size is itself refused (input.max_image_pixels),
    so the bomb still does not match the valid camera_info and is never decoded."""
    t = 80.0 + len(harness.received['objects'])
    start = totals(harness)
    info = camera_info_msg(t)
    info.width = info.height = 20000
    info.k = [20000.0, 0.0, 9999.5, 0.0, 20000.0, 9999.5, 0.0, 0.0, 1.0]
    harness.pub_info.publish(info)
    wait_total(harness, 'bad.camera_info', start.get('total.bad.camera_info', 0.0))
    harness.pub_det.publish(detections_msg(t))
    msg = CompressedImage(format='png', data=png_bomb())
    msg.header = good(t).image.header
    harness.pub_compressed.publish(msg)
    wait_total(harness, 'bad.camera_info_size', start.get('total.bad.camera_info_size', 0.0))
    send(harness, t + 0.5, _encoded('.jpg'), 'jpeg')
    assert len(sane_objects(harness, t + 0.5)) == 1
    peak = totals(harness)['memory.peak_rss_mb']
    assert peak < start['memory.peak_rss_mb'] + MAX_RSS_GROWTH_MB, (start, peak)
