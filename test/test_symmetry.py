"""Rotational symmetries: group elements, per-instance validity, metrics modulo symmetry,
relabelled keypoints (checked by projecting with OpenCV), canonical labels and tracking."""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from perception_3dinn.skeleton import category_from_dict, load_category
from perception_3dinn.symmetry import (
    canonical_element,
    closest_element,
    group_elements,
    instance_elements,
    instance_masks,
    relabel,
    rotation_error_modulo,
    RotationalSymmetry,
    symmetries_from_list,
)
from training.synth.symmetry_search import find_permutation, find_symmetries

# Table-like skeleton: legs (floor) then top corners; front = +x, left = +y.
SIGNS = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float64)


def table(length: float, width: float, height: float = 0.75) -> np.ndarray:
    legs = np.column_stack([SIGNS * [length / 2 - 0.05, width / 2 - 0.05], np.zeros(4)])
    top = np.column_stack([SIGNS * [length / 2, width / 2], np.full(4, height)])
    return np.concatenate([legs, top])


def symmetries():
    instances = np.stack([table(1.0, 1.0), table(1.6, 0.8)])
    found, fractions = find_symmetries(instances, (2, 4))
    return found, fractions


def test_permutations_found_on_instances_match_the_geometry():
    found, fractions = symmetries()
    assert [s.order for s in found] == [2, 4]
    assert fractions == {'2': 1.0, '4': 0.5}  # both have 180 deg, only the square 90
    # 180 deg: front-left <-> back-right, front-right <-> back-left (legs and top).
    np.testing.assert_array_equal(found[0].permutation, [3, 2, 1, 0, 7, 6, 5, 4])
    # +90 deg takes (x, y) to (-y, x): front-left (+, +) -> back-left (-, +).
    np.testing.assert_array_equal(found[1].permutation, [2, 0, 3, 1, 6, 4, 7, 5])
    perm, frac = find_permutation(np.stack([table(1.6, 0.8)]), 4)
    assert perm is None and frac == 0.0


def test_group_and_per_instance_elements():
    found, _ = symmetries()
    elements = group_elements(found, 8)
    assert sorted(round(np.degrees(e.angle)) for e in elements) == [0, 90, 180, 270]
    for e in elements:  # against scipy's rotation about z
        ref = Rotation.from_euler('z', e.angle).as_matrix()
        np.testing.assert_allclose(e.S, ref, atol=1e-12)
    square = instance_elements(table(1.0, 1.0), elements)
    rect = instance_elements(table(1.6, 0.8), elements)
    assert len(square) == 4
    assert sorted(round(np.degrees(e.angle)) for e in rect) == [0, 180]
    masks = instance_masks(np.stack([table(1.0, 1.0), table(1.6, 0.8)]), elements)
    assert masks.tolist() == [[True, True, True, True], [True, False, True, False]]


def test_rotation_error_modulo_and_relabelled_keypoints_project_the_same():
    found, _ = symmetries()
    elements = group_elements(found, 8)
    kp = np.stack([table(1.0, 1.0), table(1.6, 0.8)])
    masks = instance_masks(kp, elements)
    R_gt = Rotation.from_euler('xz', [[-110, 30], [-100, -70]], degrees=True).as_matrix()
    t = np.array([[0.1, 0.2, 3.0], [-0.2, 0.1, 2.5]])
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    # A prediction that is the ground truth turned by 180 deg (both) or 90 deg (square
    # only), with 2 degrees of noise: the error modulo symmetry is the noise.
    for turn, expect_free in ((np.pi, (True, True)), (np.pi / 2, (True, False))):
        S = Rotation.from_euler('z', turn).as_matrix()
        noise = Rotation.from_rotvec([[0, 0.0349, 0]] * 2).as_matrix()
        R_pred = R_gt @ S @ noise
        err, idx = rotation_error_modulo(R_pred, R_gt, elements, masks)
        # the rectangular table only has the identity and the half turn
        allowed = [Rotation.from_matrix(np.swapaxes(R_pred, 1, 2) @ R_gt
                                        @ Rotation.from_euler('z', a).as_matrix()).magnitude()
                   for a in (0.0, np.pi)]
        plain = np.minimum(*allowed)
        for b in range(2):
            if expect_free[b]:
                assert err[b] == pytest.approx(0.0349, abs=1e-6)
                assert np.isclose(elements[idx[b]].angle, turn)
            else:
                assert err[b] == pytest.approx(plain[b], abs=1e-9)
        # The ground truth relabelled for the chosen element projects exactly where the
        # equivalent pose (R_gt S, t) projects the keypoints, pixel for pixel.
        gt_2d = np.stack([cv2.projectPoints(kp[b], cv2.Rodrigues(R_gt[b])[0], t[b], K,
                                            None)[0][:, 0] for b in range(2)])
        relabelled = relabel(gt_2d, elements, idx)
        for b in range(2):
            S_b = elements[idx[b]].S
            eq = cv2.projectPoints(kp[b], cv2.Rodrigues(R_gt[b] @ S_b)[0], t[b], K,
                                   None)[0][:, 0]
            np.testing.assert_allclose(relabelled[b], eq, atol=1e-6)


def test_canonical_element_gives_one_label_per_equivalence_class():
    found, _ = symmetries()
    elements = group_elements(found, 8)
    masks = np.array([[True, False, True, False]])
    base = Rotation.from_euler('xz', [-100, 20], degrees=True).as_matrix()[None]
    picks = []
    for turn in (0.0, np.pi):  # two equivalent poses of a rectangular table
        R = base @ Rotation.from_euler('z', turn).as_matrix()
        i = canonical_element(R, elements, masks)[0]
        picks.append(R[0] @ elements[i].S)
    np.testing.assert_allclose(picks[0], picks[1], atol=1e-12)


def test_closest_element_keeps_a_track_continuous():
    found, _ = symmetries()
    elements = group_elements(found, 8)
    track = Rotation.from_euler('xz', [-100, 10], degrees=True).as_matrix()
    flipped = track @ Rotation.from_euler('z', 178, degrees=True).as_matrix()
    i = closest_element(flipped, track, elements)
    assert round(np.degrees(elements[i].angle)) == 180
    np.testing.assert_allclose(Rotation.from_matrix(flipped @ elements[i].S).magnitude(),
                               Rotation.from_matrix(track).magnitude(), atol=0.04)


def test_category_files_round_trip_and_bad_symmetries_are_refused():
    cat = load_category('chair')
    assert cat.rotational_symmetries == () and len(cat.symmetry_elements) == 1
    data = cat.to_dict()
    data['rotational_symmetries'] = [{'order': 2, 'permutation': list(range(10))}]
    again = category_from_dict(data)
    assert again.rotational_symmetries[0].order == 2
    assert again.to_dict()['rotational_symmetries'] == data['rotational_symmetries']
    for bad in ([{'order': 1, 'permutation': list(range(10))}],
                [{'order': 2, 'permutation': [0, 1]}],
                [{'order': 2, 'permutation': list(range(1, 11))}],
                [{'permutation': list(range(10))}]):
        data['rotational_symmetries'] = bad
        with pytest.raises(ValueError, match='chair'):
            category_from_dict(data)
    with pytest.raises(ValueError):
        RotationalSymmetry(0, np.arange(3))
    assert symmetries_from_list(None, 4) == ()


def test_tracker_follows_the_equivalent_rotation_nearest_its_prediction():
    from perception_3dinn.symmetry import equivalent_turns
    from perception_3dinn.tracking import Observation, Tracker

    found, _ = symmetries()
    elements = group_elements(found, 8)
    eq = equivalent_turns(table(1.6, 0.8), elements)
    assert eq.shape == (2, 3, 3)  # identity and the half turn
    assert equivalent_turns(table(1.6, 0.8), elements[:1]) is None
    R0 = Rotation.from_euler('xz', [-100, 10], degrees=True).as_matrix()
    half = Rotation.from_euler('z', 180, degrees=True).as_matrix()
    box = np.array([100.0, 100.0, 200.0, 180.0])
    for equivalents, expect_outliers in ((eq, 0), (None, 1)):
        tracker = Tracker()
        outliers = 0
        for k in range(12):  # the detector flips between the two equivalent poses
            R = R0 @ half if k % 2 else R0
            est = tracker.update(0.1 * k, [Observation(box, R, np.array([0.0, 0.0, 3.0]),
                                                       np.zeros(3), 'table',
                                                       equivalents=equivalents)])[0]
            outliers += est.outlier
            if equivalents is not None:
                ang = Rotation.from_matrix(est.R.T @ R0).magnitude()
                assert ang < 1e-6, 'the frame jumped to the equivalent pose'
        assert (outliers > 0) == bool(expect_outliers)
    with pytest.raises(ValueError, match='equivalents'):
        Tracker().update(0.0, [Observation(box, R0, np.array([0.0, 0.0, 3.0]), np.zeros(3),
                                           equivalents=np.eye(3))])
