"""One node, several categories (real node, real DDS): a sixth category installed as data
plus a model folder, with no code change, gets its own TF frames, messages, markers and
skeleton_info beside the chair; unmapped classes are skipped; bad set-ups fail configure
naming the file."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

from lifecycle_msgs.msg import Transition
from node_harness import detections_msg, Harness, NodeProcess, running_node
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from perception_3dinn.inference.manifest import default_model_dir
from perception_3dinn.inference.pipeline import bases_sha256
from perception_3dinn.skeleton import CATEGORY_DIR, category_from_dict
from perception_3dinn_msgs.msg import SkeletonInfo

pytestmark = pytest.mark.ros
NEW = 'stool_twin'  # the installed sixth category: the chair's skeleton under a new name


@pytest.fixture(scope='module')
def new_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder that brings its own category.json (copied data, no code)."""
    shipped = default_model_dir('chair')
    folder = tmp_path_factory.mktemp('installed') / NEW
    folder.mkdir()
    shutil.copy(shipped / 'model.onnx', folder / 'model.onnx')
    doc = {**json.loads((CATEGORY_DIR / 'chair.json').read_text()), 'name': NEW}
    manifest = json.loads((shipped / 'manifest.json').read_text())
    manifest.pop('shape', None)
    manifest['category'] = NEW
    manifest['category_bases_sha256'] = bases_sha256(category_from_dict(doc))
    (folder / 'manifest.json').write_text(json.dumps(manifest))
    (folder / 'category.json').write_text(json.dumps(doc))
    return folder / 'manifest.json'


@pytest.fixture()  # gone before the next test starts a node of the same name
def node(ros_env: dict[str, str], install_prefix: Path, new_model: Path) -> NodeProcess:
    yield from running_node(ros_env, 'autostart:=false', f"categories:=['chair','{NEW}']",
                            f"model.manifests:=['{NEW}:{new_model}']",
                            'output.voxel_source:=skeleton')


def test_two_categories_one_node(node: NodeProcess) -> None:
    harness = Harness()
    try:
        latched = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        infos: list[SkeletonInfo] = []
        harness.node.create_subscription(SkeletonInfo, '/chair_detector/skeleton_info',
                                         infos.append, latched)
        assert harness.transition(Transition.TRANSITION_CONFIGURE), node.log_since(0)
        assert harness.transition(Transition.TRANSITION_ACTIVATE), node.log_since(0)
        assert 'categories chair' in node.log_since(0) and NEW in node.log_since(0)
        harness.wait_inputs_matched()
        harness.wait_for(lambda: {i.category for i in infos} == {'chair', NEW})
        box = (160.0, 110.0, 120.0, 190.0)
        t, _ = harness.first_frame(1.0)
        for k in range(3):  # chair, the new category and an unmapped class, same frame
            tk = t + 1.0 + k
            dets = detections_msg(tk, [box])
            for cls, det in zip((NEW, 'potted plant'), detections_msg(tk, [box, box]).detections):
                det.id = cls
                det.results[0].hypothesis.class_id = cls
                dets.detections.append(det)
            harness.send_frame(tk, detections=dets)
            out = harness.frame_outputs(tk, ('objects', 'tf', 'markers', 'detections3d'))
        objects = out['objects'].objects
        assert sorted(o.category for o in objects) == sorted(['chair', NEW])
        frames = {tr.child_frame_id for tr in out['tf'].transforms}
        ids = sorted(int(f.rsplit('_', 1)[1]) for f in frames)
        assert len(set(ids)) == 2, frames  # track ids unique across categories
        assert any(f.startswith('chair_') for f in frames)
        assert any(f.startswith(f'{NEW}_') for f in frames)
        classes = {d.results[0].hypothesis.class_id for d in out['detections3d'].detections}
        assert classes == {'chair', NEW}
        lines = [m for m in out['markers'].markers if m.ns == 'skeleton']
        colours = {(round(m.color.r, 2), round(m.color.g, 2), round(m.color.b, 2))
                   for m in lines}
        assert len(lines) == 2 and len(colours) == 2  # coloured per category
        # the unmapped class: skipped with a warning naming it, the others processed
        harness.wait_for(lambda: "no category for detector class 'potted plant'"
                         in node.log_since(0), 10)
        assert node.alive()
    finally:
        harness.close()


def _broken(new_model: Path, how: str) -> Path:
    """A copy of the installed model folder broken in one way."""
    folder = new_model.parent.parent / f'broken_{how}' / NEW
    if not folder.exists():
        shutil.copytree(new_model.parent, folder)
        if how == 'onnx':  # a corrupt model file: its sha256 no longer matches
            with open(folder / 'model.onnx', 'r+b') as f:
                f.seek(1000)
                f.write(b'\x00' * 64)
        else:  # a category file with bases of the wrong shape
            doc = json.loads((folder / 'category.json').read_text())
            doc['bases'] = [b[:-1] for b in doc['bases']]
            (folder / 'category.json').write_text(json.dumps(doc))
    return folder / 'manifest.json'


@pytest.mark.parametrize('params, named', [
    (["categories:=['chair','ghost']"], 'ghost'),
    (["categories:=['chair']", "class_map:=['couch:sofa']"], 'sofa'),
    (["categories:=['chair']", "model.manifests:=['chair']"], 'model.manifests'),
    (['onnx'], 'sha256'),
    (['category'], 'category.json'),
])
def test_bad_category_setups_fail_configure_naming_the_problem(
        ros_env: dict[str, str], install_prefix: Path, new_model: Path, params: list[str],
        named: str) -> None:
    if params in (['onnx'], ['category']):
        path = _broken(new_model, params[0])
        params = [f"categories:=['chair','{NEW}']", f"model.manifests:=['{NEW}:{path}']"]
        named = str(path.parent / named) if named == 'category.json' else named
    proc = NodeProcess(ros_env, 'autostart:=false', *params)
    harness = Harness()
    try:
        assert not harness.transition(Transition.TRANSITION_CONFIGURE)
        harness.wait_for(lambda: 'configure failed' in proc.log_since(0), 15)
        line = next(ln for ln in proc.lines if 'configure failed' in ln)
        assert named in line, line
        assert proc.alive() and harness.state() == 'unconfigured'
    finally:
        harness.close()
        assert proc.stop() == 0, proc.log_since(0)
