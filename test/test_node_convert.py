"""Message conversion, parameters and markers of the node (messages built in-process).

References are independent: OpenCV for colour conversion and JPEG, transforms3d for
quaternions, the YAML file for the declared defaults.
"""

from __future__ import annotations

import math
from pathlib import Path
import platform

import cv2
from geometry_msgs.msg import Point
import numpy as np
import pytest
from rclpy.parameter import Parameter
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
import transforms3d
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
from visualization_msgs.msg import Marker
import yaml

from perception_3dinn.inference.types import Box2D, FrameResult, ObjectEstimate
from perception_3dinn.ros import convert, inputs, markers
from perception_3dinn.ros.params import PARAMS, SPECS, validate_parameters
from perception_3dinn.skeleton import load_category
from perception_3dinn.voxels import VoxelGrid
from perception_3dinn_msgs.msg import ObjectStructure

REPO = Path(__file__).resolve().parents[1]


def _image(arr: np.ndarray, encoding: str, pad: int = 0) -> Image:
    h, w = arr.shape[:2]
    row = arr.reshape(h, -1).view(np.uint8)
    if pad:
        row = np.concatenate([row, np.zeros((h, pad), np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, step=row.shape[1])
    msg.data = row.tobytes()
    return msg


@pytest.fixture(scope='module')
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)


def test_rgb8_and_bgr8_and_mono8(rgb: np.ndarray) -> None:
    np.testing.assert_array_equal(inputs.image_to_rgb(_image(rgb, 'rgb8')), rgb)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    np.testing.assert_array_equal(inputs.image_to_rgb(_image(bgr, 'bgr8')), rgb)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = inputs.image_to_rgb(_image(gray, 'mono8'))
    np.testing.assert_array_equal(out, cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))


def test_padded_rows_are_respected(rgb: np.ndarray) -> None:
    msg = _image(rgb, 'rgb8', pad=7)
    assert msg.step == 64 * 3 + 7
    np.testing.assert_array_equal(inputs.image_to_rgb(msg), rgb)


def test_bad_images_raise_clear_errors(rgb: np.ndarray) -> None:
    msg = _image(rgb, 'rgb8')
    msg.data = bytes(msg.data)[:-10]
    with pytest.raises(ValueError, match='data length'):
        inputs.image_to_rgb(msg)
    with pytest.raises(ValueError, match='unsupported image encoding'):
        inputs.image_to_rgb(_image(rgb, 'weird42'))
    with pytest.raises(ValueError, match='could not be decoded'):
        inputs.image_to_rgb(CompressedImage(format='jpeg', data=b'not a jpeg'))


def test_compressed_image_announcing_too_many_pixels_is_an_input_error() -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data)))

    # A 130-byte PNG whose header says 40000 x 40000 (over OpenCV's decode limit, where
    # cv2.imdecode raises instead of returning None): refused from its header.
    png = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 40000, 40000, 8, 2,
                                                             0, 0, 0))
           + chunk(b'IDAT', zlib.compress(bytes(100))) + chunk(b'IEND', b''))
    with pytest.raises(inputs.InputError, match='not decoded') as err:
        inputs.image_to_rgb(CompressedImage(format='png', data=png))
    assert err.value.kind == 'too_large'


def test_compressed_png_is_lossless(rgb: np.ndarray) -> None:
    ok, png = cv2.imencode('.png', rgb[:, :, ::-1])
    assert ok
    out = inputs.image_to_rgb(CompressedImage(format='png', data=png.tobytes()))
    np.testing.assert_array_equal(out, rgb)


def _camera_info(fx: float = 500.0) -> CameraInfo:
    msg = CameraInfo(width=640, height=480, distortion_model='plumb_bob')
    msg.k = [fx, 0.0, 319.5, 0.0, 510.0, 239.5, 0.0, 0.0, 1.0]
    msg.d = [0.1, -0.05, 0.0, 0.0, 0.0]
    return msg


def test_camera_info_to_intrinsics() -> None:
    intr = inputs.camera_info_to_intrinsics(_camera_info())
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (500.0, 510.0, 319.5, 239.5)
    assert (intr.width, intr.height) == (640, 480)
    assert intr.distortion == (0.1, -0.05, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match='not finite'):
        inputs.camera_info_to_intrinsics(_camera_info(fx=math.nan))
    with pytest.raises(ValueError, match='no calibration'):
        inputs.camera_info_to_intrinsics(CameraInfo(width=640, height=480))


@pytest.mark.parametrize('n', [1, 2, 3, 6, 7, 20])
def test_camera_info_with_a_distortion_length_opencv_refuses_is_rejected(n: int) -> None:
    msg = _camera_info()
    msg.d = [0.01] * n
    with pytest.raises(inputs.InputError, match=f'{n} distortion coefficients') as err:
        inputs.camera_info_to_intrinsics(msg)
    assert err.value.kind == 'distortion'


@pytest.mark.parametrize('n', [4, 5, 8, 12, 14])
def test_accepted_distortion_lengths_work_in_opencv(n: int) -> None:
    msg = _camera_info()
    msg.d = [0.01] * n
    intr = inputs.camera_info_to_intrinsics(msg)
    assert len(intr.distortion) == n
    # The coefficients are usable as they are (what the pipeline's PnP does with them).
    pts = np.array([[300.0, 200.0], [10.0, 400.0]])
    out = cv2.undistortPoints(pts.reshape(-1, 1, 2), intr.K, intr.dist_coeffs)
    assert np.all(np.isfinite(out))


def test_all_zero_distortion_of_any_length_means_none() -> None:
    msg = _camera_info()
    msg.d = [0.0] * 20
    assert inputs.camera_info_to_intrinsics(msg).distortion == ()


def test_detections_to_boxes() -> None:
    det = Detection2D(id='7')
    det.bbox.center.position.x, det.bbox.center.position.y = 100.0, 50.0
    det.bbox.size_x, det.bbox.size_y = 40.0, 20.0
    for cls, score in (('person', 0.3), ('chair', 0.9)):
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = cls, score
        det.results.append(hyp)
    boxes = inputs.detections_to_boxes(Detection2DArray(detections=[det, Detection2D()]))
    assert boxes[0] == Box2D(80.0, 40.0, 120.0, 60.0, 'chair', 0.9, '7')
    assert boxes[1].detection_id is None and boxes[1].width == 0.0


def test_pose_quaternion_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        axis = rng.normal(size=3)
        R = transforms3d.axangles.axangle2mat(axis, rng.uniform(-3, 3))
        pose = convert.pose_msg(R, np.array([1.0, 2.0, 3.0]))
        ref = Rotation.from_matrix(R).as_quat()  # x, y, z, w
        q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z,
                      pose.orientation.w])
        assert q[3] >= 0
        assert min(np.abs(q - ref).max(), np.abs(q + ref).max()) < 1e-9
        np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), R, atol=1e-12)
        assert (pose.position.x, pose.position.y, pose.position.z) == (1.0, 2.0, 3.0)


def _estimate(category, track_id: str = '3') -> ObjectEstimate:
    R = transforms3d.euler.euler2mat(0.3, -0.2, 0.1)
    t = np.array([0.2, 0.1, 3.0])
    alpha = np.zeros(category.num_bases)
    y = category.metric_structure(alpha)
    occ = np.zeros((4, 5, 6), np.uint8)
    occ[1, 2, 3] = 255
    occ[3, 4, 5] = 200
    occ[0, 0, 0] = 10
    return ObjectEstimate(
        track_id=track_id, category=category.name, score=0.8, R=R, t=t, structure=alpha,
        focal=300.0, keypoints_2d=np.zeros((category.num_keypoints, 2)),
        confidences=np.linspace(0, 1, category.num_keypoints),
        keypoints_3d=y @ R.T + t, voxels=VoxelGrid(occ, 0.05, np.array([-0.1, -0.1, 0.0])),
        box=Box2D(10, 20, 110, 220, 'chair', 0.9, 'd1'), box_index=0, pose_source='pnp',
        reproj_error_px=1.5)


def test_frame_messages_keep_stamp_frames_and_layout() -> None:
    cat = load_category('chair')
    header = Header(frame_id='camera_optical_frame')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    result = FrameResult(stamp_s=12.0, objects=[_estimate(cat), _estimate(cat, '')])
    result.objects[1].score = 0.1
    out = convert.frame_messages(result, header, cat, 'robot1/', convert.TrackIds(),
                                 min_score=0.5)
    assert len(out['kept']) == 1
    obj = out['objects'].objects[0]
    assert obj.header.stamp == header.stamp and obj.header.frame_id == 'camera_optical_frame'
    assert obj.track_id == 3 and obj.child_frame_id == 'robot1/chair_3'
    assert obj.pose_source == ObjectStructure.POSE_SOURCE_PNP
    assert len(obj.keypoints_3d) == cat.num_keypoints
    tf = out['tf'].transforms[0]
    assert tf.header.frame_id == 'camera_optical_frame' and tf.child_frame_id == obj.child_frame_id
    assert tf.transform.translation.z == pytest.approx(3.0)
    grid = out['voxels'].grids[0]
    assert grid.header.frame_id == 'robot1/chair_3' and grid.header.stamp == header.stamp
    data = np.frombuffer(bytes(grid.data), np.uint8)
    assert data[(1 * grid.size_y + 2) * grid.size_z + 3] == 255
    assert data[(3 * grid.size_y + 4) * grid.size_z + 5] == 200
    assert (grid.size_x, grid.size_y, grid.size_z) == (4, 5, 6)
    det = out['detections3d'].detections[0]
    assert det.results[0].hypothesis.class_id == 'chair' and det.id == '3'
    # The 3D box is centred between floor and top of the skeleton, along the object's z.
    R = result.objects[0].R
    y = cat.metric_structure(np.zeros(cat.num_bases))
    centre_obj = R.T @ (np.array([det.bbox.center.position.x, det.bbox.center.position.y,
                                  det.bbox.center.position.z]) - result.objects[0].t)
    assert centre_obj[2] == pytest.approx((min(y[:, 2].min(), 0) + y[:, 2].max()) / 2)


def test_markers_have_stable_ids_and_one_colour_per_keypoint() -> None:
    cat = load_category('chair')
    obj = _estimate(cat)
    header = Header(frame_id='cam')
    ms = markers.object_markers(obj, 3, header, cat, lifetime_s=0.5, voxel_threshold=128)
    by_ns = {m.ns: m for m in ms}
    assert set(by_ns) == {'skeleton', 'keypoints', 'labels', 'voxels'}
    assert all(m.id == 3 and m.lifetime.nanosec == 500_000_000 for m in ms)
    assert len(by_ns['skeleton'].points) == 2 * len(cat.edges)
    kp = by_ns['keypoints']
    assert len(kp.points) == len(kp.colors) == cat.num_keypoints
    assert kp.colors[0].r > kp.colors[0].g and kp.colors[-1].g > kp.colors[-1].r
    assert by_ns['voxels'].type == Marker.CUBE_LIST
    assert len(by_ns['voxels'].points) == 2  # voxels >= 128
    first = by_ns['voxels'].points[0]
    assert (first.x, first.y, first.z) == pytest.approx((-0.1 + 1.5 * 0.05, -0.1 + 2.5 * 0.05,
                                                        3.5 * 0.05))
    assert isinstance(first, Point)
    # one colour per cube by probability: 255 (certain) yellow, 200 between teal and yellow
    colours = by_ns['voxels'].colors
    assert len(colours) == 2 and colours[0].r > 0.9 and colours[0].b < 0.2
    assert colours[1].r < 0.5 and colours[1].g > 0.5 and colours[0].a > colours[1].a
    no_vox = markers.object_markers(obj, 3, header, cat, 0.5, voxel_threshold=None)
    assert 'voxels' not in {m.ns for m in no_vox}


def test_yaml_defaults_match_the_declared_parameters() -> None:
    doc = yaml.safe_load((REPO / 'config' / 'chair_detector.yaml').read_text())
    params = doc['/**']['ros__parameters']

    def flat(d: dict, prefix: str = '') -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f'{prefix}{k}.') if isinstance(v, dict) else {prefix + k: v})
        return out

    values = flat(params)
    # Empty-list defaults cannot be written in a ROS parameter file: named in its comments.
    unset = {s.name for s in PARAMS if s.default == []}
    assert set(values) == set(SPECS) - unset
    text = (REPO / 'config' / 'chair_detector.yaml').read_text()
    for name in unset:
        assert name in text, name
    for spec in PARAMS:
        if spec.name in unset:
            continue
        assert spec.check(values[spec.name]) is None, spec.name
        if spec.name != 'autostart':  # the config starts the node; the code default does not
            assert values[spec.name] == spec.default, spec.name


def test_parameter_validation_refuses_bad_values() -> None:
    assert validate_parameters([Parameter('input.sync_slop_s', value=0.05)]).successful
    for name, value in (('input.sync_slop_s', 2.0), ('model.backend', 'tensorflow'),
                        ('filter.max_objects', 0), ('output.qos_reliability', 'maybe'),
                        ('filter.class_ids', 'chair'), ('pose.floor_plane', [0.0, 1.0]),
                        ('pose.floor_plane', [0.0, -1.0, 0.0, float('nan')])):
        result = validate_parameters([Parameter(name, value=value)])
        assert not result.successful and name in result.reason
    for spec in PARAMS:
        desc = spec.descriptor()
        assert desc.description and desc.name == spec.name
        if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
            assert desc.floating_point_range or desc.integer_range, spec.name


def test_no_detector_boxes() -> None:
    full = inputs.no_detector_box(640, 480, 'full', 0.5, 'chair')
    assert full.as_array().tolist() == [0.0, 0.0, 639.0, 479.0] and full.class_id == 'chair'
    centre = inputs.no_detector_box(640, 480, 'center', 0.5, 'chair')
    assert centre.center == (319.5, 239.5)
    assert (centre.width, centre.height) == (320.0, 240.0)


def test_node_and_pipeline_import_without_torch() -> None:
    import subprocess
    import sys

    code = ('import sys, perception_3dinn.ros.node, perception_3dinn.ros.replay; '
            'from perception_3dinn.inference import Pipeline; '
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == 'False'


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='glibc malloc only')
def test_keep_large_buffers_serves_image_sized_blocks_from_the_heap() -> None:
    """A 3 MB block comes from fresh mmap pages by default and from the heap (below the
    program break) once tuned; each case in a fresh interpreter."""
    import subprocess
    import sys

    code = """
import ctypes, ctypes.util, sys
from perception_3dinn.ros.memory import keep_large_buffers
libc = ctypes.CDLL(ctypes.util.find_library('c'))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_long]
tuned = keep_large_buffers() if sys.argv[1] == '1' else None
block = libc.malloc(3 << 20)
print(tuned, 'heap' if block < libc.sbrk(0) else 'mmap')
"""
    out = [subprocess.run([sys.executable, '-c', code, flag], capture_output=True, text=True,
                          check=True, cwd=REPO).stdout.split() for flag in ('0', '1')]
    assert out == [['None', 'mmap'], ['True', 'heap']]
