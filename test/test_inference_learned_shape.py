"""Learned voxels at runtime: export of the shape graph, its manifest section, the
LearnedVoxelizer on ONNX Runtime against eager torch, grid geometry, bad shape graphs and the
pipeline's voxel sources.

A tiny random shape model (weights scaled up so the probabilities span [0, 1]) and the
shipped chair INN are exported once per module (about 25 s on 2 cores).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from scipy import ndimage
import torch

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.crops import Crop, crop_image
from perception_3dinn.inference import Box2D, Pipeline, PipelineConfig
from perception_3dinn.inference.learned_shape import (
    LearnedVoxelizer,
    shape_graph_problem,
    voxel_source,
)
from perception_3dinn.inference.manifest import (
    default_model_dir,
    load_manifest,
    manifest_from_dict,
    ManifestError,
    sha256_file,
)
from perception_3dinn.inference.shape import StructureVoxelizer
from perception_3dinn.models import category_record
from perception_3dinn.models.checkpoint import save_shape_checkpoint
from perception_3dinn.models.keypoint_net import KeypointNetConfig
from perception_3dinn.models.style_encoder import ShapeModel, ShapeModelConfig, StyleEncoderConfig
from perception_3dinn.models.voxel_decoder import VoxelDecoderConfig
from perception_3dinn.skeleton import load_category
from perception_3dinn.voxels import grid_for_dimensions
from training.export import export
from training.synth.images import ImageConfig, render_sample

CATEGORY = load_category('chair')
SHIPPED = default_model_dir('chair')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    torch.manual_seed(5)
    root = tmp_path_factory.mktemp('learned_shape')
    cfg = ShapeModelConfig(
        'chair', StyleEncoderConfig(128, (4, 4, 4), 8, extra_convs=1, head='flatten',
                                    hidden=16, dropout=0.2, trunk='keypoint',
                                    keypoint=KeypointNetConfig(stem_channels=4, channels=8)),
        VoxelDecoderConfig(num_bases=CATEGORY.num_bases, alpha_std=tuple(CATEGORY.alpha_std),
                           style_dim=8, size=32, channels=(8, 8, 8)))
    model = ShapeModel(cfg).eval()
    with torch.no_grad():  # larger weights (not in the deep trunk): probabilities in [0, 1]
        for name, module in model.named_modules():
            if name.startswith('style_encoder.trunk'):
                continue
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.ConvTranspose3d)):
                module.weight.mul_(4.0)
    res, origin = grid_for_dimensions(CATEGORY.dimensions_m, 32)
    ckpt = save_shape_checkpoint(root / 'shape.pt', model, category_record(CATEGORY),
                                 {'size': 32, 'resolution': res, 'origin': origin.tolist()},
                                 step=2, metrics={'threshold': 0.4, 'val_iou': 0.1})
    path = export(root / 'model', checkpoint=SHIPPED / 'model.pt', size_model_instances=0,
                  shape=ckpt)
    return model, path


def _probs(model, crops, structure):
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(crops, np.float32)),
                     torch.from_numpy(np.asarray(structure, np.float32))).numpy()


def _reference_grid(probs, scale_m):
    """Independent reference of the documented resampling: the output voxel centre x samples
    the canonical grid at x * size_prior / scale (scipy, linear, zero outside)."""
    res, origin = grid_for_dimensions(CATEGORY.dimensions_m, 32)
    centres = origin + (np.arange(32)[:, None] + 0.5) * res  # (32, 3) per axis
    u = (centres * CATEGORY.size_prior_m / scale_m - origin) / res - 0.5
    coords = np.stack(np.meshgrid(u[:, 0], u[:, 1], u[:, 2], indexing='ij'))
    p = ndimage.map_coordinates(probs.astype(np.float64), coords, order=1, mode='grid-constant',
                                cval=0.0)
    return np.rint(255.0 * np.clip(p, 0.0, 1.0))


def test_export_writes_a_checked_shape_section(exported):
    _, path = exported
    data = json.loads(path.read_text())
    section = data['shape']
    graph = load_manifest(path).shape
    assert section['file'] == 'shape.onnx' and graph.onnx_file == path.parent / 'shape.onnx'
    assert section['sha256'] == sha256_file(graph.onnx_file) == graph.sha256
    assert graph.threshold == pytest.approx(0.4) and graph.size == 32
    res, origin = grid_for_dimensions(CATEGORY.dimensions_m, 32)
    assert graph.resolution == pytest.approx(res)
    np.testing.assert_allclose(graph.origin, origin)
    assert section['inputs']['structure'] == ['B', CATEGORY.num_bases]
    assert section['parity_max_abs'] < 1e-4
    proto = onnx.load(str(graph.onnx_file))
    onnx.checker.check_model(proto, full_check=True)
    for inp in proto.graph.input:  # both inputs have the dynamic batch axis
        assert inp.type.tensor_type.shape.dim[0].dim_param
    # the main graph is the INN as without --shape
    assert data['onnx']['file'] == 'model.onnx' and data['outputs']['structure'][1:] == [
        CATEGORY.num_bases]


def test_learned_voxelizer_equals_torch(exported):
    model, path = exported
    voxelizer = LearnedVoxelizer(load_manifest(path).shape, CATEGORY)
    rng = np.random.default_rng(2)
    crops = rng.normal(0, 1, (3, 3, 128, 128)).astype(np.float32)
    structure = rng.normal(0, 1, (3, CATEGORY.num_bases)) * CATEGORY.alpha_std
    prior = CATEGORY.size_prior_m
    scales = [prior, 0.8 * prior, 1.25 * prior]
    probs = _probs(model, crops, structure)
    assert probs.min() < 0.05 and probs.max() > 0.95  # a shape, not a constant 0.5
    grids = voxelizer.grids(crops, structure, scales)
    assert len(grids) == 3
    # at the size prior the canonical grid is the output grid: round(255 p) itself
    expected = np.rint(255.0 * probs[0])
    assert grids[0].occupancy.dtype == np.uint8
    assert np.abs(grids[0].occupancy.astype(int) - expected).max() <= 1
    for grid, p, scale in zip(grids[1:], probs[1:], scales[1:]):
        reference = _reference_grid(p, scale)
        assert np.abs(grid.occupancy.astype(int) - reference).max() <= 1
        assert np.abs(grid.occupancy.astype(int) - np.rint(255.0 * p)).max() > 50


@pytest.mark.parametrize('factor', [0.75, 1.0, 1.2])
def test_grid_geometry_is_the_skeleton_voxelizers(exported, factor):
    _, path = exported
    learned = LearnedVoxelizer(load_manifest(path).shape, CATEGORY)
    tubes = StructureVoxelizer(CATEGORY)
    alpha = np.random.default_rng(3).normal(0, 1, CATEGORY.num_bases) * CATEGORY.alpha_std
    scale = factor * CATEGORY.size_prior_m
    skeleton = tubes(alpha, scale)
    grid = learned.grids(np.zeros((1, 3, 128, 128), np.float32), alpha[None], [scale])[0]
    assert grid.shape == skeleton.shape
    assert grid.resolution == pytest.approx(skeleton.resolution, rel=1e-12)
    np.testing.assert_allclose(grid.origin, skeleton.origin, rtol=0, atol=1e-12)
    # the content is scaled like the skeleton: tubes drawn at the size prior and resampled
    # to `scale` are (up to voxelisation) the tubes drawn at `scale`
    canonical = tubes.occupancy(alpha, CATEGORY.size_prior_m).astype(np.float64)
    moved = learned.probabilities(canonical, scale) >= 0.5
    target = tubes.occupancy(alpha, scale)
    iou = (moved & target).sum() / (moved | target).sum()
    assert iou > 0.6
    if factor != 1.0:  # unscaled, the canonical tubes miss the object
        unscaled = canonical >= 0.5
        assert (unscaled & target).sum() / (unscaled | target).sum() < iou - 0.15


def _copy(path, tmp_path):
    target = tmp_path / 'model'
    target.mkdir()
    for name in ('manifest.json', 'model.onnx', 'shape.onnx'):
        shutil.copy(path.parent / name, target / name)
    return target


@pytest.mark.parametrize('damage', ['corrupt', 'missing'])
def test_bad_shape_graph_is_refused_with_the_file_named(exported, tmp_path, damage):
    _, path = exported
    folder = _copy(path, tmp_path)
    shape = folder / 'shape.onnx'
    if damage == 'corrupt':
        shape.write_bytes(shape.read_bytes()[:-1] + b'x')
        message = 'shape.onnx does not match its manifest'
    else:
        shape.unlink()
        message = 'shape graph file .*shape.onnx does not exist'
    manifest = load_manifest(folder)  # the main graph is fine
    with pytest.raises(ManifestError, match=message):
        manifest.shape.verify()
    for source in ('auto', 'learned'):
        with pytest.raises(ManifestError, match=message):
            Pipeline.from_manifest(folder, config=PipelineConfig(voxel_source=source))
    with pytest.warns(RuntimeWarning, match=message):
        pipe = Pipeline.from_manifest(folder, config=PipelineConfig(voxel_source='skeleton'))
    assert pipe.learned_voxelizer is None and 'skeleton voxels' in pipe.voxel_note
    # the node's configure check: refused for learned, accepted for skeleton
    assert shape_graph_problem(folder, 'learned') is not None
    assert 'shape.onnx' in shape_graph_problem(folder / 'manifest.json', 'learned')
    assert shape_graph_problem(folder, 'skeleton') is None
    assert shape_graph_problem(path, 'learned') is None  # the intact export
    assert shape_graph_problem(SHIPPED, 'learned') is None  # the shipped graph is intact


def test_shape_section_is_validated(exported):
    _, path = exported
    data = json.loads(path.read_text())
    assert voxel_source(manifest_from_dict(data, path), 'auto')[0] is not None
    bad = json.loads(path.read_text())
    bad['shape']['inputs']['structure'] = ['B', CATEGORY.num_bases + 1]
    with pytest.raises(ManifestError, match='structure shape'):
        manifest_from_dict(bad, path)
    bad = json.loads(path.read_text())
    bad['shape']['grid']['resolution'] = -1.0
    with pytest.raises(ManifestError, match='positive resolution'):
        manifest_from_dict(bad, path)
    bad = json.loads(path.read_text())
    bad['shape']['threshold'] = 1.5
    with pytest.raises(ManifestError, match='threshold'):
        manifest_from_dict(bad, path)


@pytest.fixture(scope='module')
def frame():
    """A rendered chair, its camera and two boxes around it (two crops in one batch)."""
    sample = render_sample(CATEGORY, np.random.default_rng(7), ImageConfig(size=192))
    K = sample['K'].astype(np.float64)
    camera = CameraIntrinsics(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], width=192,
                              height=192)
    box = sample['box'].astype(np.float64)
    boxes = [Box2D(*box, class_id='chair', score=0.9),
             Box2D(*(box + [-6, -4, 5, 6]), class_id='chair', score=0.8)]
    return sample['image'], camera, boxes


def _independent_crops(pipe, image, objects):
    """The normalised network input of each object, computed here from its box."""
    m = pipe.manifest
    out = []
    for obj in objects:
        crop = Crop.from_box(obj.box.as_array(), m.input_size, pad=pipe.config.crop_pad)
        patch = crop_image(image, crop).astype(np.float64) / 255.0
        out.append(((patch - m.mean) / m.std).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def test_pipeline_voxel_sources(exported, frame):
    model, path = exported
    image, camera, boxes = frame
    config = PipelineConfig(smoothing=False, voxel_source='learned')
    learned = Pipeline.from_manifest(path, config=config)
    assert learned.learned_voxelizer is not None and learned.voxel_note is None
    result = learned.process(image, camera, boxes, 0.0, voxels=False)
    assert len(result.objects) == 2 and all(o.voxels is None for o in result.objects)
    learned.add_voxels(result)
    crops = _independent_crops(learned, image, result.objects)
    probs = _probs(model, crops, np.stack([o.structure for o in result.objects]))
    tubes = StructureVoxelizer(CATEGORY)
    for obj, p in zip(result.objects, probs):
        reference = _reference_grid(p, obj.scale_m)
        assert np.abs(obj.voxels.occupancy.astype(int) - reference).max() <= 2
        old = tubes(obj.structure, obj.scale_m).occupancy
        assert np.mean(obj.voxels.occupancy != old) > 0.05
    # voxels in process() are the same as added later
    direct = learned.process(image, camera, boxes, 0.1, voxels=True)
    for a, b in zip(direct.objects, result.objects):
        np.testing.assert_array_equal(a.voxels.occupancy, b.voxels.occupancy)
    # skeleton: the old tubes, for the same model and frame
    skeleton = Pipeline.from_manifest(path, config=PipelineConfig(smoothing=False,
                                                                  voxel_source='skeleton'))
    assert skeleton.learned_voxelizer is None and skeleton.voxel_note is None
    old = skeleton.process(image, camera, boxes, 0.0)
    for obj in old.objects:
        np.testing.assert_array_equal(obj.voxels.occupancy,
                                      tubes(obj.structure, obj.scale_m).occupancy)
        assert set(np.unique(obj.voxels.occupancy)) <= {0, 255}


def test_shipped_model_has_a_trained_shape_graph(frame):
    image, camera, boxes = frame
    pipe = Pipeline.from_manifest(SHIPPED, config=PipelineConfig(smoothing=False))
    assert pipe.learned_voxelizer is not None and pipe.voxel_note is None
    section = json.loads((SHIPPED / 'manifest.json').read_text())['shape']
    assert section['trained'] and section['metrics']['val_iou@0.5'] > 0.4
    result = pipe.process(image, camera, boxes, 0.0, voxels=True)
    assert result.objects
    for obj in result.objects:
        occ = obj.voxels.occupancy
        assert occ.shape == (32, 32, 32) and 0 < np.mean(occ >= 128) < 0.5


def test_learned_without_a_shape_graph_falls_back_with_a_warning(frame, tmp_path):
    image, camera, boxes = frame
    bare = tmp_path / 'no_shape'
    bare.mkdir()
    shutil.copy(SHIPPED / 'model.onnx', bare / 'model.onnx')
    manifest = json.loads((SHIPPED / 'manifest.json').read_text())
    del manifest['shape']
    (bare / 'manifest.json').write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning, match='has no shape graph'):
        pipe = Pipeline.from_manifest(bare, config=PipelineConfig(voxel_source='learned'))
    assert pipe.learned_voxelizer is None
    auto = Pipeline.from_manifest(bare)  # auto: skeleton, silently
    assert auto.learned_voxelizer is None and auto.voxel_note is None
    result = pipe.process(image, camera, boxes, 0.0)
    tubes = StructureVoxelizer(CATEGORY)
    assert result.objects
    for obj in result.objects:
        np.testing.assert_array_equal(obj.voxels.occupancy,
                                      tubes(obj.structure, obj.scale_m).occupancy)
