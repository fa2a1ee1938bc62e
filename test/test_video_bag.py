"""Video-stage tracks from real rosbag2 files (issue 18, item 2): tracks follow the detector's
ids or box overlap, bad bags name the missing topic, a bag where nothing moves is flagged,
and ``train video --bag`` adapts a model."""

import json

import numpy as np
import pytest
from std_msgs.msg import Header

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.crops import Crop, crop_image
from perception_3dinn.inference.manifest import default_model_dir
from perception_3dinn.ros import bagio
from perception_3dinn.ros.bagdata import (
    camera_info_msg,
    DemoFrame,
    Detection,
    image_msgs,
    write_demo_bag,
)
from perception_3dinn.ros.convert import ns_to_stamp
from perception_3dinn.skeleton import load_category
from training import train
from training.synth.generate import generate_image_dataset
from training.synth.images import ImageConfig
from training.video_data import load_bag_tracks, split_tracks

INTR = CameraIntrinsics(fx=120.0, fy=120.0, cx=79.5, cy=59.5, width=160, height=120)


def _frames(boxes_per_frame, ids=True):
    """Frames with a textured image and the given boxes (one list of boxes per frame)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    out = []
    for boxes in boxes_per_frame:
        dets = [Detection(np.asarray(b, np.float64), 'chair', 0.9, str(i + 1) if ids else '')
                for i, b in enumerate(boxes)]
        out.append(DemoFrame(image, INTR, [], dets))
    return out


def _moving(n, dx=2.0):
    return [[(20 + dx * k, 30, 60 + dx * k, 90), (100 - dx * k, 20, 140 - dx * k, 70)]
            for k in range(n)]


def test_tracks_follow_ids_and_crops_match_the_runtime(tmp_path):
    path = tmp_path / 'bag'
    frames = _frames(_moving(10))
    write_demo_bag(frames, path, load_category('chair'), fps=10.0)
    data, rep = load_bag_tracks([path], 64, 0.15, 16)
    bag = rep['bags'][0]
    assert bag['frames'] == 10 and bag['detections'] == 20
    assert bag['tracks'] == 2 and bag['track_frames'] == 20 and bag['static_tracks'] == 0
    assert [length for _, length in data['tracks']] == [10, 10]
    # row 3 of the first track is the crop of frame 3's first box (JPEG-decoded image)
    from perception_3dinn.ros import inputs
    from perception_3dinn.ros.replay import load_frames

    f = load_frames(path)[3]
    rgb = inputs.image_to_rgb(f.image, (160, 120))
    expect = crop_image(rgb, Crop.from_box(np.array(_moving(10)[3][0], float), 64, 0.15))
    np.testing.assert_array_equal(data['crops'][3], expect)
    train_part, val_part = split_tracks(data, 0.3)
    assert [n for _, n in train_part['tracks']] == [7, 7]
    assert [n for _, n in val_part['tracks']] == [3, 3]


def test_tracks_without_ids_join_by_overlap_and_break_at_gaps(tmp_path):
    boxes = _moving(9)
    boxes[4] = boxes[4][1:]  # the first object is missed in frame 4 (bridged)
    boxes[6] = boxes[6][1:]  # and in frames 6-8 (a gap of 3 > max_gap: a new track)
    boxes[7] = boxes[7][1:]
    boxes[8] = boxes[8][1:]
    path = tmp_path / 'bag'
    write_demo_bag(_frames(boxes, ids=False), path, load_category('chair'), fps=10.0)
    data, rep = load_bag_tracks([path], 64, 0.15, 16, max_gap=2)
    assert sorted(n for _, n in data['tracks']) == [5, 9]
    assert rep['bags'][0]['bridged_frames'] == 1


def test_a_bag_where_nothing_moves_is_flagged(tmp_path, capsys):
    path = tmp_path / 'bag'
    write_demo_bag(_frames(_moving(6, dx=0.0)), path, load_category('chair'), fps=10.0)
    _, rep = load_bag_tracks([path], 64, 0.15, 16)
    assert rep['bags'][0]['static_tracks'] == 2
    assert 'nothing moves' in capsys.readouterr().out


@pytest.mark.parametrize('missing', ['detections', 'camera_info'])
def test_bags_missing_a_topic_name_it(tmp_path, missing):
    path = tmp_path / 'bag'
    header = Header(stamp=ns_to_stamp(1_000_000_000), frame_id='camera')
    with bagio.BagWriter(path) as bag:
        if missing != 'camera_info':
            bag.write(bagio.CAMERA_INFO_TOPIC, camera_info_msg(INTR, header), 1_000_000_000)
        bag.write(bagio.COMPRESSED_TOPIC, image_msgs(np.zeros((120, 160, 3), np.uint8),
                                                     header, True), 1_000_000_000)
    topic = bagio.DETECTIONS_TOPIC if missing == 'detections' else bagio.CAMERA_INFO_TOPIC
    with pytest.raises(SystemExit, match=topic):
        load_bag_tracks([path], 64, 0.15, 16)


def test_train_video_adapts_to_a_bag(tmp_path):
    path = tmp_path / 'bag'
    write_demo_bag(_frames(_moving(12)), path, load_category('chair'), fps=10.0)
    images = tmp_path / 'images'
    generate_image_dataset('chair', 4, images, seed=5, config=ImageConfig(voxels=False),
                           progress=False)
    out = tmp_path / 'run'
    train.main(['video', '--init', str(default_model_dir('chair')), '--bag', str(path),
                '--images', str(images), '--out', str(out), '--clip-lengths', '3',
                '--steps-per-length', '2', '--clips', '2', '--batch', '2',
                '--eval-every', '1', '--val-fraction', '0.3', '--threads', '1'])
    recs = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
    bags = [r for r in recs if r['kind'] == 'bags']
    assert bags and bags[0]['bags'][0]['tracks'] == 2
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['metrics']['selection'] == 'video_loss'
    assert (out / 'model.pt').is_file()
