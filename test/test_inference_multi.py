"""One runtime, many categories (`inference.multi`): class map, routing, ambiguous classes,
refused manifests, and a chair-only frame equal to the single-category pipeline.

Real models only: the shipped chair model, and copies of it in tmp_path that carry their own
category file (`category.json` beside manifest.json): 'twin' (the chair category under
another name: the same fit as the chair) and 'warped' (the chair with its keypoint order
reversed: the network's heatmaps then match the wrong skeleton points, a worse fit). Inputs
are a rendered chair and boxes around it.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.inference import Box2D, ManifestError, Pipeline, PipelineConfig
from perception_3dinn.inference.manifest import (
    category_source,
    default_model_dir,
    load_manifest,
)
from perception_3dinn.inference.multi import ClassMap, MultiPipeline
from perception_3dinn.inference.pipeline import bases_sha256, is_filtered
from perception_3dinn.skeleton import CATEGORY_DIR, category_from_dict, load_category
from perception_3dinn.tracking import Observation, Tracker
from training.synth.images import ImageConfig, render_sample

SHIPPED = default_model_dir('chair')
FAST = PipelineConfig(compute_voxels=False, class_ids=())


def _model_copy(root, name, category_doc):
    """A copy of the shipped chair model whose manifest and category.json say `name`."""
    folder = root / name
    folder.mkdir()
    shutil.copy(SHIPPED / 'model.onnx', folder / 'model.onnx')
    manifest = json.loads((SHIPPED / 'manifest.json').read_text())
    del manifest['shape']  # skeleton voxels: no need for the shape graph
    manifest['category'] = name
    manifest['category_bases_sha256'] = bases_sha256(category_from_dict(category_doc))
    (folder / 'manifest.json').write_text(json.dumps(manifest))
    (folder / 'category.json').write_text(json.dumps(category_doc))
    return folder


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp('models')
    chair = json.loads((CATEGORY_DIR / 'chair.json').read_text())
    twin = {**chair, 'name': 'twin'}
    n = len(chair['keypoint_names'])
    warped = {**chair, 'name': 'warped', 'keypoint_names': chair['keypoint_names'][::-1],
              'bases': [b[::-1] for b in chair['bases']],
              'edges': [[n - 1 - a, n - 1 - b] for a, b in chair['edges']],
              'symmetric_pairs': [[n - 1 - a, n - 1 - b] for a, b in chair['symmetric_pairs']]}
    return {'chair': SHIPPED, 'twin': _model_copy(root, 'twin', twin),
            'warped': _model_copy(root, 'warped', warped)}


@pytest.fixture(scope='module')
def frame():
    """A rendered chair, its camera, and two boxes around it."""
    sample = render_sample(load_category('chair'), np.random.default_rng(7),
                           ImageConfig(size=192))
    K = sample['K'].astype(np.float64)
    camera = CameraIntrinsics(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], width=192,
                              height=192)
    box = sample['box'].astype(np.float64)
    return sample['image'], camera, [box, box + [-6, -4, 5, 6]]


def _count_batches(multi):
    """Record the batch size of every engine call of each category."""
    calls = {name: [] for name in multi.pipelines}
    for name, pipe in multi.pipelines.items():
        run = pipe.engine.run

        def counted(batch, run=run, log=calls[name]):
            log.append(len(batch))
            return run(batch)
        pipe.engine.run = counted
    return calls


def test_model_folder_carries_its_category(models, tmp_path):
    assert category_source(load_manifest(SHIPPED)) == 'chair'  # shipped: by name
    twin = Pipeline.from_manifest(models['twin'], config=FAST)
    assert category_source(twin.manifest) == models['twin'] / 'category.json'
    assert twin.category.name == 'twin'
    chair = Pipeline.from_manifest(SHIPPED, config=FAST)
    np.testing.assert_array_equal(twin.category.bases, chair.category.bases)
    # a category file of another name than the manifest's category is refused, file named
    bad = tmp_path / 'bad'
    shutil.copytree(models['twin'], bad)
    doc = json.loads((bad / 'category.json').read_text())
    (bad / 'category.json').write_text(json.dumps({**doc, 'name': 'other'}))
    with pytest.raises(ManifestError, match=r"category\.json: category 'other'.*'twin'"):
        Pipeline.from_manifest(bad, config=FAST)


def test_class_map_parse_and_defaults():
    cmap = ClassMap.parse(['Dining  Table:table', 'chair: chair , swivel_chair', 'a:b:c'])
    assert cmap.candidates('dining table') == ('table',)
    assert cmap.candidates(' DINING TABLE ') == ('table',)
    assert cmap.candidates('chair') == ('chair', 'swivel_chair')
    assert cmap.candidates('a:b') == ('c',)
    assert cmap.candidates('potted plant') == ()
    assert ClassMap.parse(cmap.entries()) == cmap
    only_chair = ClassMap.default(['chair'])
    assert only_chair.as_dict() == {'chair': ('chair',), 'armchair': ('chair',)}
    full = ClassMap.default(['chair', 'swivel_chair', 'sofa', 'table', 'bed'])
    assert full.candidates('chair') == ('chair', 'swivel_chair')
    assert full.candidates('couch') == full.candidates('Sofa') == ('sofa',)
    assert full.candidates('dining table') == full.candidates('desk') == ('table',)
    assert full.candidates('bed') == ('bed',)
    assert full.candidates('swivel chair') == full.candidates('swivel_chair') == (
        'swivel_chair',)
    assert full.candidates('armchair') == ('chair', 'sofa')
    assert ClassMap.default(['sofa']).candidates('armchair') == ('sofa',)
    assert ClassMap.default(['twin']).as_dict() == {'twin': ('twin',)}
    # user entries override the defaults label by label
    user = ClassMap.with_defaults(['CHAIR:chair', 'stool:chair'], ['chair', 'swivel_chair'])
    assert user.candidates('chair') == ('chair',)
    assert user.candidates('stool') == ('chair',)
    assert user.candidates('swivel chair') == ('swivel_chair',)


@pytest.mark.parametrize('entries, named', [
    (['chair'], "'chair': no \":\""),
    ([':chair'], "':chair': empty label"),
    (['chair:'], "'chair:': empty category name"),
    (['couch:sofa', 'chair:chair,,sofa'], "'chair:chair,,sofa': empty category name"),
    (['chair:swivel chair'], "'chair:swivel chair': category names may not contain spaces"),
    (['chair:chair', 'CHAIR:sofa'], "'CHAIR:sofa': label 'chair' given twice"),
    ([5], 'entry 5 is not a string'),
])
def test_bad_class_map_entries_raise_naming_the_entry(entries, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        ClassMap.parse(entries)


def test_boxes_are_routed_to_their_categories(models, frame):
    image, camera, (a, b) = frame
    multi = MultiPipeline.from_manifests(
        {'chair': None, 'twin': models['twin']}, config=FAST,
        class_map=ClassMap.with_defaults(['Twin Chair:twin'], ['chair', 'twin']))
    assert list(multi.categories) == ['chair', 'twin'] and multi.category.name == 'chair'
    assert all(p.config.class_ids == () for p in multi.pipelines.values())
    calls = _count_batches(multi)
    boxes = [Box2D(*a, 'chair', 0.9), Box2D(*a, 'potted plant', 0.9),
             Box2D(*b, 'twin chair', 0.8), Box2D(*b, 'CHAIR', 0.7), 'not a box']
    result = multi.process(image, camera, boxes, 0.0)
    assert calls == {'chair': [2], 'twin': [1]}  # one batch per model
    assert [(o.box_index, o.category) for o in result.objects] == [
        (0, 'chair'), (2, 'twin'), (3, 'chair')]
    assert [i for i, _ in result.skipped] == [1, 4]
    reason = dict(result.skipped)[1]
    assert reason.startswith("no category for detector class 'potted plant': set ")
    assert not is_filtered(reason)  # the node warns about it (throttled)
    assert all(o.candidates == () for o in result.objects)
    assert multi.pipelines['chair'].tracker.num_tracks == 2
    assert multi.pipelines['twin'].tracker.num_tracks == 1
    # each object is what its category's own pipeline makes of that box alone
    for obj in result.objects:
        single = Pipeline.from_manifest(models[obj.category], config=FAST)
        alone = single.process(image, camera, [boxes[obj.box_index]], 0.0).objects[0]
        np.testing.assert_allclose(obj.keypoints_2d, alone.keypoints_2d, atol=1e-9)
        np.testing.assert_allclose(obj.t, alone.t, atol=1e-9)
        assert obj.box.as_array().tolist() == boxes[obj.box_index].as_array().tolist()
    timings = result.timings_ms
    assert {'network', 'pose', 'tracking', 'total.chair', 'total.twin'} <= set(timings)
    assert timings['total'] >= timings['total.chair'] + timings['total.twin'] > 0
    # nothing routed: the image is still checked, the trackers still see the clock
    with pytest.raises(ValueError, match='image must be'):
        multi.process(image[..., 0], camera, [], 0.1)


def test_ambiguous_class_keeps_the_better_fit_without_ghost_tracks(models, frame):
    image, camera, (a, b) = frame
    boxes = [Box2D(*a, 'chair', 0.9), Box2D(*b, 'chair', 0.8)]
    warped = Pipeline.from_manifest(models['warped'], config=FAST)
    worse = warped.process(image, camera, boxes, 0.0).objects
    multi = MultiPipeline.from_manifests(
        {'chair': None, 'warped': models['warped']}, config=FAST,
        class_map=ClassMap.parse(['chair:warped,chair']))  # the worse fit listed first
    calls = _count_batches(multi)
    track_ids = []
    for k, stamp in enumerate((0.0, 0.1)):
        result = multi.process(image, camera, boxes, stamp)
        assert calls == {'chair': [2] * (k + 1), 'warped': [2] * (k + 1)}
        assert [(o.box_index, o.category) for o in result.objects] == [(0, 'chair'),
                                                                       (1, 'chair')]
        assert all(o.candidates == ('warped', 'chair') for o in result.objects)
        assert all(o.score > w.score for o, w in zip(result.objects, worse))
        assert multi.pipelines['warped'].tracker.num_tracks == 0  # the losers' tracks dropped
        assert multi.pipelines['chair'].tracker.num_tracks == 2
        track_ids.append([o.track_id for o in result.objects])
    assert track_ids[1] == track_ids[0]  # the kept tracks go on
    # equal fits (the same model and skeleton): the earlier candidate wins
    tie = MultiPipeline.from_manifests({'chair': None, 'twin': models['twin']}, config=FAST,
                                       class_map=ClassMap.parse(['chair:twin,chair']))
    result = tie.process(image, camera, boxes, 0.0)
    assert [o.category for o in result.objects] == ['twin', 'twin']
    assert tie.pipelines['chair'].tracker.num_tracks == 0
    assert tie.pipelines['twin'].tracker.num_tracks == 2


def test_wrong_registrations_are_refused(models):
    with pytest.raises(ManifestError, match=re.escape(str(models['twin'] / 'manifest.json'))
                       + ".*'twin' registered under 'sofa'"):
        MultiPipeline.from_manifests({'chair': None, 'sofa': models['twin']}, config=FAST)
    chair = Pipeline.from_manifest(SHIPPED, config=FAST)
    with pytest.raises(ValueError, match="category 'chair'.*registered under 'twin'"):
        MultiPipeline({'twin': chair}, ClassMap())
    with pytest.raises(ValueError, match=r"'couch' -> \['sofa'\] not installed"):
        MultiPipeline({'chair': chair}, ClassMap.parse(['couch:sofa']))
    filtering = Pipeline.from_manifest(SHIPPED, config=PipelineConfig(compute_voxels=False))
    with pytest.raises(ValueError, match=r'class_ids=\(\)'):
        MultiPipeline({'chair': filtering}, ClassMap.default(['chair']))


def _assert_same(got, want):
    assert [o.box_index for o in got.objects] == [o.box_index for o in want.objects]
    assert [i for i, _ in got.skipped] == [i for i, _ in want.skipped]
    for g, w in zip(got.objects, want.objects):
        assert (g.track_id, g.category, g.pose_source, g.num_pnp_keypoints) == (
            w.track_id, w.category, w.pose_source, w.num_pnp_keypoints)
        for name in ('R', 't', 'structure', 'keypoints_2d', 'confidences', 'keypoints_3d',
                     'covariance'):
            np.testing.assert_allclose(getattr(g, name), getattr(w, name), rtol=0, atol=1e-9)
        assert g.score == pytest.approx(w.score, abs=1e-9)
        assert g.scale_m == pytest.approx(w.scale_m, abs=1e-9)
        assert g.box == w.box and g.candidates == ()
        if w.voxels is None:
            assert g.voxels is None
        else:
            np.testing.assert_array_equal(g.voxels.occupancy, w.voxels.occupancy)


def test_chair_only_frames_equal_the_single_pipeline(frame):
    image, camera, (a, b) = frame
    single = Pipeline.from_manifest(None)  # the shipped defaults: class_ids=('chair',)
    multi = MultiPipeline.from_manifests({'chair': None})
    assert multi.voxel_note == single.voxel_note
    for k in range(3):
        shift = np.array([2.0, 1.0, 2.0, 1.0]) * k
        boxes = [Box2D(*(a + shift), 'chair', 0.9), Box2D(10, 10, 60, 90, 'person', 0.9),
                 Box2D(*(b - shift), 'Chair', 0.8)]
        voxels = k != 1
        got = multi.process(image, camera, boxes, 0.1 * k, voxels=voxels)
        want = single.process(image, camera, boxes, 0.1 * k, voxels=voxels)
        if not voxels:
            multi.add_voxels(got)
            single.add_voxels(want)
            assert got.timings_ms['voxels_added'] > 0
        assert len(want.objects) == 2
        _assert_same(got, want)
        assert set(want.timings_ms) <= set(got.timings_ms)
    assert multi.pipelines['chair'].tracker.num_tracks == single.tracker.num_tracks == 2


def test_tracker_drop():
    tracker = Tracker()
    obs = Observation(box=np.array([0.0, 0.0, 10.0, 10.0]), R=np.eye(3),
                      t=np.array([0.0, 0.0, 2.0]), structure=np.zeros(3))
    track_id = tracker.update(0.0, [obs])[0].track_id
    assert tracker.num_tracks == 1
    assert tracker.drop(track_id) and tracker.num_tracks == 0
    assert not tracker.drop(track_id)
