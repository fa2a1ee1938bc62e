"""The per-frame pipeline: geometry end to end, fallbacks, tracking, bad inputs.

The geometry tests replace the network (not under test here) by an oracle engine that returns
what a perfect network would for known objects: exact Gaussian heatmaps of the true keypoints
in each crop and the crop-camera pose of a perturbed true pose. Crops, decoding, the mapping
back to image pixels, PnP, tracking and voxels are the real code. Bad-input tests run the
shipped ONNX model through ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.crops import Crop
from perception_3dinn.geometry import geodesic_angle, pose_from_viewpoint
from perception_3dinn.inference import Box2D, FrameResult, Pipeline, PipelineConfig
from perception_3dinn.inference.engines import Engine
from perception_3dinn.inference.manifest import default_model_dir, load_manifest
from perception_3dinn.inference.pose import crop_camera_pose, FloorPlane, interpreter_pose
from perception_3dinn.skeleton import load_category
from perception_3dinn.voxels import VoxelGrid

CAMERA = CameraIntrinsics(fx=600.0, fy=600.0, cx=319.5, cy=239.5, width=640, height=480)
MANIFEST = load_manifest(default_model_dir('chair'))
CATEGORY = load_category(MANIFEST.category)


def _scale(alpha):
    """Reference of the documented metric scale: prior x exp(bias + w . alpha), clipped."""
    if MANIFEST.size_model is None:
        return CATEGORY.size_prior_m
    bias, w = MANIFEST.size_model
    return CATEGORY.size_prior_m * np.exp(np.clip(bias + np.dot(w, alpha), -np.log(1.5),
                                                  np.log(1.5)))


class OracleEngine(Engine):
    """What a perfect network would output for the objects set with `expect`."""

    backend = 'oracle'

    def __init__(self, manifest, category, pad, amplitude=1.0, size_factor=1.0):
        super().__init__(manifest)
        self.size_factor = size_factor  # true size / the size model's
        self.category = category
        self.pad = pad
        self.amplitude = amplitude
        self.codec = HeatmapCodec(manifest.input_size, manifest.stride, manifest.sigma)
        self.objects = []
        self.interp_error = Rotation.from_rotvec([0.05, -0.04, 0.03])  # about 4 degrees

    def expect(self, objects):
        """objects: list of (box (4,), R, t, alpha), in box order."""
        self.objects = objects

    def run(self, batch):
        batch = self.check_batch(batch)
        assert len(batch) == len(self.objects)
        s = self.manifest.input_size
        out = {k: [] for k in self.manifest.output_names}
        for box, R, t, alpha in self.objects:
            crop = Crop.from_box(box, s, pad=self.pad)
            Y = self.category.structure(alpha) * _scale(alpha) * self.size_factor
            X = Y @ R.T + t
            uv = np.stack([CAMERA.fx * X[:, 0] / X[:, 2] + CAMERA.cx,
                           CAMERA.fy * X[:, 1] / X[:, 2] + CAMERA.cy], axis=1)
            out['heatmaps'].append(self.amplitude * self.codec.encode(crop.to_crop(uv)))
            R_c, t_c, f_c = crop_camera_pose(self.interp_error.as_matrix() @ R, t * 1.1, crop,
                                             CAMERA, _scale(alpha))
            out['structure'].append(alpha)
            out['rotation'].append(R_c)
            out['translation'].append(t_c)
            out['focal'].append(f_c)
        return self.check_outputs({k: np.stack(v) for k, v in out.items()}, len(batch))


def _scene(seed, n=2):
    """n chairs in front of the camera: (box, R, t, alpha, true image keypoints)."""
    rng = np.random.default_rng(seed)
    objects = []
    for i in range(n):
        R, t = pose_from_viewpoint(rng.uniform(-np.pi, np.pi), rng.uniform(0.05, 0.4),
                                   rng.uniform(2.5, 4.0), target=(0.0, 0.0, 0.4))
        t = t + np.array([(-0.8 if i == 0 else 0.8), rng.uniform(-0.1, 0.1), 0.0])
        alpha = rng.normal(0, 1, CATEGORY.num_bases) * CATEGORY.alpha_std
        X = CATEGORY.structure(alpha) * _scale(alpha) @ R.T + t
        uv = X[:, :2] / X[:, 2:] * CAMERA.fx + [CAMERA.cx, CAMERA.cy]
        box = np.array([*uv.min(0) - 10, *uv.max(0) + 10])
        objects.append((box, R, t, alpha, uv))
    return objects


def _pipeline(config=None, amplitude=1.0, size_factor=1.0):
    config = config or PipelineConfig()
    engine = OracleEngine(MANIFEST, CATEGORY, config.crop_pad, amplitude, size_factor)
    return Pipeline(engine, MANIFEST, CATEGORY, config), engine


def _run(pipe, engine, objects, stamp, image=None, floor=None):
    engine.expect([(o[0], o[1], o[2], o[3]) for o in objects])
    boxes = [Box2D(*o[0], class_id='chair', score=0.9) for o in objects]
    image = np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8) if image is None else image
    return pipe.process(image, CAMERA, boxes, stamp, floor=floor)


@pytest.mark.parametrize('seed', range(3))
def test_metric_pose_from_perfect_network(seed):
    pipe, engine = _pipeline(PipelineConfig(smoothing=False))
    objects = _scene(seed)
    result = _run(pipe, engine, objects, 0.0)
    assert isinstance(result, FrameResult) and result.skipped == []
    assert len(result.objects) == 2
    for obj, (_, R, t, alpha, uv) in zip(result.objects, objects):
        assert obj.pose_source == 'pnp' and obj.num_pnp_keypoints == CATEGORY.num_keypoints
        np.testing.assert_allclose(obj.keypoints_2d, uv, atol=0.05)  # sub-pixel decoding
        assert np.degrees(geodesic_angle(obj.R, R)) < 0.1
        assert np.linalg.norm(obj.t - t) < 0.002 * np.linalg.norm(t)
        np.testing.assert_allclose(obj.structure, alpha, atol=1e-5)
        assert obj.scale_m == pytest.approx(_scale(obj.structure), rel=1e-12)
        assert obj.scale_m == pytest.approx(_scale(alpha), rel=1e-6)  # float32 outputs
        np.testing.assert_allclose(obj.keypoints_3d,
                                   CATEGORY.structure(alpha) * _scale(alpha) @ R.T + t, atol=0.01)
        assert obj.reproj_error_px < 0.1 and 0.8 < obj.score <= 0.9  # box score 0.9
        assert isinstance(obj.voxels, VoxelGrid) and obj.voxels.shape == (32, 32, 32)
        assert obj.category == 'chair' and obj.box_index in (0, 1)
    assert set(result.timings_ms) >= {'boxes', 'crops', 'network', 'decode', 'pose',
                                      'tracking', 'voxels', 'total'}


def test_interpreter_fallback_when_keypoints_unsure():
    pipe, engine = _pipeline(PipelineConfig(smoothing=False), amplitude=0.2)
    objects = _scene(5, n=1)
    result = _run(pipe, engine, objects, 0.0)
    obj = result.objects[0]
    assert obj.pose_source == 'interpreter' and obj.num_pnp_keypoints == 0
    box, R, t, alpha, _ = objects[0]
    crop = Crop.from_box(box, MANIFEST.input_size, pad=pipe.config.crop_pad)
    R_c, t_c, f_c = crop_camera_pose(engine.interp_error.as_matrix() @ R, t * 1.1, crop,
                                     CAMERA, _scale(alpha))
    R_i, t_i = interpreter_pose(R_c, t_c, f_c, crop, CAMERA, _scale(alpha))
    np.testing.assert_allclose(obj.R, R_i, atol=1e-5)
    np.testing.assert_allclose(obj.t, t_i, atol=1e-5)
    # the interpreter's pose is ~4 degrees and 10 % off: the score says it is worse
    assert obj.score < 0.2


def test_tracks_persist_and_reset():
    pipe, engine = _pipeline()
    objects = _scene(2)
    ids = None
    for k in range(5):
        result = _run(pipe, engine, objects, 100.0 + k / 30)
        now = [o.track_id for o in result.objects]
        assert ids is None or now == ids
        ids = now
    assert len(set(ids)) == 2
    # smoothing of a static object with exact measurements keeps it exact
    for obj, (_, _, t, _, _) in zip(result.objects, objects):
        assert np.linalg.norm(obj.t - t) < 0.002 * np.linalg.norm(t)
    back = _run(pipe, engine, objects, 50.0)  # clock went backwards: all tracks new
    assert not set(o.track_id for o in back.objects) & set(ids)
    pipe.reset()
    again = _run(pipe, engine, objects, 50.1)
    assert not set(o.track_id for o in again.objects) & set(o.track_id for o in back.objects)


def test_size_model_sets_the_metric_scale():
    assert MANIFEST.size_model is not None  # the shipped manifest carries one
    alpha = CATEGORY.alpha_std * np.array([1.0, -1.0, 0.5, 0.0, 2.0][:CATEGORY.num_bases])
    pipe, _ = _pipeline()
    bias, w = MANIFEST.size_model
    expected = CATEGORY.size_prior_m * np.exp(bias + sum(wi * a for wi, a in zip(w, alpha)))
    assert pipe.scale_m(alpha) == pytest.approx(expected, rel=1e-12)
    off, _ = _pipeline(PipelineConfig(size_from_structure=False))
    assert off.scale_m(alpha) == CATEGORY.size_prior_m
    # the voxels follow the scale: a bigger object occupies more voxels
    small = pipe.voxelizer(alpha, 0.8 * CATEGORY.size_prior_m).occupancy.sum()
    big = pipe.voxelizer(alpha, 1.2 * CATEGORY.size_prior_m).occupancy.sum()
    assert big > small


@pytest.mark.parametrize('smoothing', [False, True])
def test_floor_plane_measures_the_size_the_size_model_misses(smoothing):
    """A chair 15 % bigger than its size model says: without the floor the distance is off
    by the same 15 %; with the true floor plane the pipeline finds the true size."""
    box, R, t, alpha, _ = _scene(7, n=1)[0]
    # the box of the bigger chair (the scene's box is for the size-model size)
    X = CATEGORY.structure(alpha) * _scale(alpha) * 1.15 @ R.T + t
    uv = X[:, :2] / X[:, 2:] * CAMERA.fx + [CAMERA.cx, CAMERA.cy]
    objects = [(np.array([*uv.min(0) - 10, *uv.max(0) + 10]), R, t, alpha)]
    floor = FloorPlane.from_object_pose(R, t)
    assert floor.offset > 0.3  # the camera looks down at the chair
    for use_floor, tolerance in ((False, None), (True, 0.005)):
        pipe, engine = _pipeline(PipelineConfig(smoothing=smoothing), size_factor=1.15)
        for k in range(3):
            result = _run(pipe, engine, objects, k / 30, floor=floor if use_floor else None)
        (obj,) = result.objects
        error = np.linalg.norm(obj.t - t) / np.linalg.norm(t)
        if use_floor:
            assert error < tolerance
            assert obj.scale_m == pytest.approx(1.15 * _scale(alpha), rel=0.005)
            # keypoints_3d and the foot on the floor: n . x + d = 0 for the leg keypoints
            feet = obj.keypoints_3d[:4]
            assert np.all(np.abs(feet @ floor.normal + floor.offset) < 0.01)
        else:
            assert error == pytest.approx(0.15 / 1.15, abs=0.01)
            assert obj.scale_m == pytest.approx(_scale(alpha), rel=1e-4)
    # a tipped-over chair (up axis 90 degrees off the floor normal) keeps the size model
    side = FloorPlane.from_coefficients([*R[:, 1], 1.0])
    pipe, engine = _pipeline(PipelineConfig(smoothing=smoothing), size_factor=1.15)
    obj = _run(pipe, engine, objects, 0.0, floor=side).objects[0]
    assert obj.scale_m == pytest.approx(_scale(alpha), rel=1e-4)


@pytest.fixture(scope='module')
def real_pipe():
    return Pipeline.from_manifest(None, backend='onnxruntime',
                                  config=PipelineConfig(max_objects=3))


def test_bad_boxes_are_skipped_not_raised(real_pipe):
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    boxes = [
        Box2D(100, 100, 300, 400, 'chair', 0.9),          # 0 good
        Box2D(np.nan, 0, 50, 50, 'chair', 0.9),           # 1 NaN
        Box2D(200, 200, 100, 300, 'chair', 0.9),          # 2 degenerate (x_max < x_min)
        Box2D(700, 10, 900, 200, 'chair', 0.9),           # 3 outside the image
        Box2D(10, 10, 14, 14, 'chair', 0.9),              # 4 tiny
        Box2D(300, 100, 500, 400, 'person', 0.9),         # 5 other class
        Box2D(-100, 200, 120, 520, 'CHAIR', 0.8),         # 6 partly outside: clipped
        'not a box',                                      # 7
        Box2D(0, 0, 10, 10, 'chair', float('nan')),       # 8 NaN score
        Box2D(float('inf'), 0, 10, 10, 'chair', 0.9),     # 9 infinite
        Box2D(400, 100, 600, 400, 'chair', 0.5),          # 10 good
        Box2D(420, 120, 620, 420, 'chair', 0.4),          # 11 over max_objects (4th score)
        Box2D(420, 120, 620, 420, 'chair', 0.3),          # 12 over max_objects
    ]
    result = real_pipe.process(image, CameraIntrinsics.from_fov(640, 480, 60), boxes, 1.0)
    skipped = dict(result.skipped)
    assert sorted(o.box_index for o in result.objects) == [0, 6, 10]
    assert set(skipped) == {1, 2, 3, 4, 5, 7, 8, 9, 11, 12}
    assert 'non-finite' in skipped[1] and 'degenerate' in skipped[2]
    assert 'outside' in skipped[3] and 'min_box_size' in skipped[4]
    assert 'class' in skipped[5] and 'Box2D' in skipped[7] and 'score' in skipped[8]
    assert 'max_objects' in skipped[11] and 'max_objects' in skipped[12]
    clipped = next(o for o in result.objects if o.box_index == 6).box
    assert (clipped.x_min, clipped.y_max) == (-0.5, 479.5)
    for obj in result.objects:
        assert np.all(np.isfinite(obj.R)) and np.all(np.isfinite(obj.t))
        assert 0.0 <= obj.score <= 1.0


def test_empty_frame_and_bad_frames(real_pipe):
    cam = CameraIntrinsics.from_fov(320, 240, 60)
    image = np.zeros((240, 320, 3), np.uint8)
    result = real_pipe.process(image, cam, [], 2.0)
    assert result.objects == [] and result.skipped == [] and 'total' in result.timings_ms
    box = [Box2D(10, 10, 200, 200, 'chair')]
    nan_cam = CameraIntrinsics(float('nan'), 300.0, 160.0, 120.0, 320, 240)
    with pytest.raises(ValueError, match='not finite'):
        real_pipe.process(image, nan_cam, box, 2.1)
    with pytest.raises(ValueError, match='positive'):
        real_pipe.process(image, CameraIntrinsics(0.0, 300.0, 160.0, 120.0, 320, 240), box, 2.1)
    with pytest.raises(ValueError, match='uint8'):
        real_pipe.process(image.astype(np.float32), cam, box, 2.1)
    with pytest.raises(ValueError, match='uint8'):
        real_pipe.process(image[..., 0], cam, box, 2.1)
    with pytest.raises(ValueError, match='640x480'):
        real_pipe.process(image, CameraIntrinsics.from_fov(640, 480, 60), box, 2.1)
    with pytest.raises(ValueError, match='stamp'):
        real_pipe.process(image, cam, box, float('nan'))
    with pytest.raises(ValueError, match='max_objects'):
        PipelineConfig(max_objects=0).validate()


@pytest.mark.parametrize('box', [(100, 80, 180, 300), (-50, -20, 90, 60), (600, 400, 700, 520),
                                 (0, 0, 639, 479), (300.3, 200.7, 305.1, 204.9)])
def test_region_crop_equals_full_image_crop(box):
    from perception_3dinn.crops import crop_image
    from perception_3dinn.inference.pipeline import crop_roi

    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (480, 640, 3), np.uint8)
    crop = Crop.from_box(np.array(box, float), 128, pad=0.15)
    diff = crop_roi(image, crop).astype(int) - crop_image(image, crop).astype(int)
    # warpAffine's fixed-point (1/32 px) source coordinates may round differently when the
    # image origin moves by whole pixels: at most 1 grey level, rarely
    assert np.abs(diff).max() <= 1 and np.mean(diff != 0) < 0.01


def test_normalise_matches_float64_reference():
    pipe = Pipeline(OracleEngine(MANIFEST, CATEGORY, 0.15), MANIFEST, CATEGORY)
    crops = np.random.default_rng(9).integers(0, 256, (3, 128, 128, 3), np.uint8)
    mean = np.asarray(MANIFEST.mean, np.float64) * 255.0
    std = np.asarray(MANIFEST.std, np.float64) * 255.0
    expected = ((crops.astype(np.float64) - mean) / std).transpose(0, 3, 1, 2)
    got = pipe.normalise(crops)
    assert got.dtype == np.float32 and got.shape == (3, 3, 128, 128)
    assert got.flags['C_CONTIGUOUS']
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)


def test_voxels_can_be_skipped_or_added_later():
    pipe, engine = _pipeline(PipelineConfig(smoothing=False))
    objects = _scene(0)
    with_voxels = _run(pipe, engine, objects, 0.0)
    engine.expect([(o[0], o[1], o[2], o[3]) for o in objects])
    boxes = [Box2D(*o[0], class_id='chair', score=0.9) for o in objects]
    image = np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8)
    without = pipe.process(image, CAMERA, boxes, 0.1, voxels=False)
    assert len(without.objects) == len(with_voxels.objects) == 2
    for a, b in zip(with_voxels.objects, without.objects):
        assert isinstance(a.voxels, VoxelGrid) and b.voxels is None
        np.testing.assert_allclose(b.t, a.t, rtol=1e-9)
        np.testing.assert_allclose(b.structure, a.structure)
    # added later (the node, after the poses went out): the same grids
    total = without.timings_ms['total']
    pipe.add_voxels(without)
    assert without.timings_ms['total'] == pytest.approx(total + without.timings_ms['voxels_added'])
    for a, b in zip(with_voxels.objects, without.objects):
        np.testing.assert_array_equal(b.voxels.occupancy, a.voxels.occupancy)
        np.testing.assert_allclose(b.voxels.origin, a.voxels.origin)
