"""Training images of user meshes labelled with per-mesh keypoints (issue 19, item 3): the
labels land on the rendered object, and agree with OpenCV's projection of the 3D labels."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from perception_3dinn.skeleton import CATEGORY_DIR
from training.keypoint_category import to_canonical
from training.keypointnet_eval import hand_made_keypoints
from training.synth.dataset import ShardDataset
from training.synth.generate import generate_image_dataset
from training.synth.images import ImageConfig
from training.synth.mesh_export import export_instances
from training.synth.mesh_instances import instance_from_mesh, load_instances
from training.synth.meshes import load_mesh_folder


@pytest.fixture(scope='module')
def user_chairs(tmp_path_factory):
    """Three exported chairs and a keypoints.npz holding their hand-made keypoints, as
    training.discover_category writes one."""
    root = tmp_path_factory.mktemp('user')
    folder = root / 'meshes'
    export_instances('chair', 3, folder, seed=21, progress=False)
    meshes, _ = load_mesh_folder(folder, up='z')
    hand = hand_made_keypoints(folder, meshes)
    metres = np.array([1.0 / m.scale for m in meshes])  # the files are in metres
    kp = np.stack([to_canonical(k, m, s) for k, m, s in zip(hand, meshes, metres)])
    npz = root / 'keypoints.npz'
    np.savez(npz, names=np.array([m.name for m in meshes]), keypoints_m=kp,
             metres_per_unit=metres)
    return folder, npz, meshes, kp


def test_instance_keeps_the_mesh_in_metres(user_chairs):
    folder, npz, meshes, kp = user_chairs
    inst = instance_from_mesh(meshes[0], kp[0], 1.0 / meshes[0].scale)
    lo, hi = inst.bounds()
    assert lo[2] == pytest.approx(-0.5 * 0.004 * 2.0 / meshes[0].scale, abs=1e-3)
    np.testing.assert_allclose(hi - lo, meshes[0].raw_extent, atol=0.01)
    assert len(inst.parts) == len(meshes[0].faces)
    assert len(load_instances(str(folder), str(npz), 'z')) == 3


def test_mesh_images_labels_fall_on_the_object(user_chairs, tmp_path):
    folder, npz, _, _ = user_chairs
    config = ImageConfig(size=96, voxels=False, occluder_prob=0.0, mesh_dir=str(folder),
                         mesh_keypoints=str(npz), mesh_up='z')
    out = tmp_path / 'ds'
    manifest = generate_image_dataset(str(CATEGORY_DIR / 'chair.json'), 8, out, seed=3,
                                      config=config, progress=False)
    assert manifest['config']['mesh_dir'] == str(folder)
    ds = ShardDataset(out)
    seen = 0
    for i in range(len(ds)):
        s = ds[i]
        proj, _ = cv2.projectPoints(s['keypoints_3d'].astype(np.float64), np.zeros(3),
                                    np.zeros(3), s['K'].astype(np.float64), None)
        np.testing.assert_allclose(s['keypoints_2d'], proj[:, 0], atol=1e-3)
        mask = ndimage.binary_dilation(s['mask'] > 0, iterations=1)
        uv = np.round(s['keypoints_2d'][s['visible']]).astype(int)
        assert mask[uv[:, 1], uv[:, 0]].all()
        seen += len(uv)
    assert seen >= 0.3 * 8 * 10  # most labels visible, occluded ones flagged


def test_mesh_config_needs_both_paths():
    with pytest.raises(ValueError, match='go together'):
        ImageConfig(mesh_dir='somewhere')


def test_stool_family_exports_plain_meshes(tmp_path):
    out = export_instances('stool', 3, tmp_path, seed=4, progress=False)
    assert out == tmp_path and not (tmp_path / 'keypoints.json').exists()
    meshes, report = load_mesh_folder(tmp_path, up='z')
    assert len(meshes) == 3 and not report.skipped
    for m in meshes:
        assert 0.42 <= m.raw_extent[2] <= 1.06  # seat height plus an optional back
        assert m.raw_extent[:2].max() <= m.raw_extent[2] * 1.5
    with pytest.raises(KeyError, match='mesh-only families: stool'):
        export_instances('lamp', 1, tmp_path / 'x', progress=False)
