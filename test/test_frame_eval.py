"""The full-frame benchmark end to end: scenes written by the CLI, the runtime pipeline on
them, errors binned and recomputed independently from the saved per-object arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope='module')
def scenes(tmp_path_factory) -> Path:
    from training.synthesize import main

    out = tmp_path_factory.mktemp('frames') / 'frames_640'
    main(['scenes', '--count', '3', '--out', str(out), '--seed', '5', '--camera', '640x480',
          '--objects', '2', '3'])
    return out


def test_scene_set_manifest(scenes: Path) -> None:
    manifest = json.loads((scenes / 'manifest.json').read_text())
    assert manifest['kind'] == 'scenes' and manifest['count'] == 3
    assert manifest['config']['width'] == 640 and manifest['config']['fx'] == 615.0
    assert manifest['fields']['image']['shape'] == [480, 640, 3]


@pytest.mark.parametrize('floor', [False, True])
def test_evaluate_scenes(tmp_path: Path, scenes: Path, floor: bool) -> None:
    from training.evaluate import main

    out = tmp_path / 'eval'
    main(['--data', str(scenes), '--out', str(out)] + (['--floor'] if floor else []))
    res = json.loads((out / 'metrics.json').read_text())
    assert res['floor'] is floor and res['scenes'] == 3
    assert 0 < res['objects_answered'] <= res['objects_given']
    per = np.load(out / 'per_object.npz')
    n = res['objects_answered']
    assert len(per['t_pred']) == n
    # recompute the headline numbers from the raw arrays
    dist = np.linalg.norm(per['t_gt'], axis=1)
    ratio = np.linalg.norm(per['t_pred'], axis=1) / dist
    assert res['binned']['all']['range_ratio_median'] == pytest.approx(np.median(ratio))
    rel = np.linalg.norm(per['t_pred'] - per['t_gt'], axis=1) / dist
    assert res['binned']['all']['translation_rel_median'] == pytest.approx(np.median(rel))
    for name in ('distance_m', 'box_height_px', 'truncation', 'occlusion', 'view',
                 'elevation_deg'):
        assert sum(r['count'] for r in res['binned'][name]) == n, name
    assert np.all(per['range_sigma'] > 0)
    for name in ('binned.png', 'binned.md'):
        assert (out / name).stat().st_size > 0
