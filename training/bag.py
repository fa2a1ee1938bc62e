"""Bag tools: write the demo rosbag from a synthetic video; evaluate a bag offline and live.

    python -m training.bag make-demo [--out out/demo/chair_demo] [--seed 7] [--frames 90]
    python -m training.bag evaluate --bag out/demo/chair_demo --out out/demo/eval \\
        [--offline] [--live [--start-node]] [--rate 15] [--loops 1] [--floor-frame floor]

Mixed scenes (several categories per frame; one model per category; untrained table and
sofa models for plumbing until trained ones are packaged):

    for c in table sofa; do python -m training.export --random-init --category $c \\
        --out /tmp/x/$c; done
    python -m training.bag make-demo --categories chair,table,sofa   # out/demo/mixed_demo
    python -m training.bag evaluate --bag out/demo/mixed_demo --out out/demo/mixed_eval \\
        --offline --live --start-node --models table=/tmp/x/table,sofa=/tmp/x/sofa \\
        --floor-frame floor

make-demo renders one synthetic video (training.synth.videos, deterministic for a seed) and
writes /camera/image_raw/compressed (JPEG; --raw for sensor_msgs/Image), /camera/camera_info,
/detections (ground-truth boxes with realistic noise, misses and false positives; class ids
as a COCO detector names the categories: chair, dining table, couch, bed),
/ground_truth/objects (with each object's category) and /tf `floor -> camera_optical_frame`
(the camera's pose above the floor, as a robot's TF tree gives it, with a fixed calibration
error of 1 deg tilt and 2 cm height by default). Without --categories it is the chair demo
bag as ever.

evaluate replays the bag (a) offline through the pipeline (a MultiPipeline when the bag has
several categories) and (b) live through the node over DDS (started with `categories` and
`model.manifests` for several; re-stamped with the wall clock, so receipt minus stamp is the
node's latency), and writes into --out: metrics.json (accuracy against ground truth overall
and per category, rotation modulo a category's symmetry; latency percentiles, drops, ROS
overhead = live latency - offline pipeline time), plots (latency.png, errors.png), an
annotated video (annotated.mp4: skeleton, axes, category) and output_bag/ (inputs as sent
plus every output of the node; open it in Foxglove or RViz). Each category's model comes
from --models CAT=PATH (a model folder or its manifest.json), else --model when that is a
model of it, else the packaged one (perception_3dinn/data/models/CAT).

The steps live in training/replay/ (demo, offline, live, accuracy, report, evaluate).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

# The bag tools' public names, as they have always been importable from here.
from training.replay.accuracy import accuracy, image_size, match_objects  # noqa: F401
from training.replay.demo import (  # noqa: F401
    camera_in_floor,
    DetectionNoise,
    detector_label,
    make_demo,
    noisy_detections,
    video_frames,
)
from training.replay.evaluate import evaluate, served_models  # noqa: F401
from training.replay.live import evaluate_live, start_node  # noqa: F401
from training.replay.offline import evaluate_offline  # noqa: F401
from training.replay.report import annotated_video, plots, summary  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BAG = REPO / 'out' / 'demo' / 'chair_demo'
DEFAULT_MIXED_BAG = REPO / 'out' / 'demo' / 'mixed_demo'
DEFAULT_EVAL = REPO / 'out' / 'demo' / 'eval'


def _categories(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(',') if n.strip())
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f'--categories {text!r}: a name repeats')
    return names


def _models(entries: list[str] | None) -> dict[str, Path]:
    """--models 'chair=PATH,table=PATH' (repeatable) -> category -> path."""
    out: dict[str, Path] = {}
    for entry in entries or []:
        for item in entry.split(','):
            if not item.strip():
                continue
            name, sep, path = item.partition('=')
            if not sep or not name.strip() or not path.strip():
                sys.exit(f'--models {item!r}: expected CATEGORY=PATH')
            if name.strip() in out:
                sys.exit(f'--models names {name.strip()!r} twice')
            out[name.strip()] = Path(path.strip()).expanduser()
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m training.bag', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)
    m = sub.add_parser('make-demo', help='write the demo bag from a synthetic video')
    m.add_argument('--out', type=Path, default=None,
                   help=f'rosbag2 folder to write (default {DEFAULT_BAG.relative_to(REPO)}, '
                        f'with --categories {DEFAULT_MIXED_BAG.relative_to(REPO)})')
    m.add_argument('--seed', type=int, default=None,
                   help='seed of the video and the detector (default 7; with several '
                        '--categories 1, a scene where chair, table and sofa are all in view)')
    m.add_argument('--frames', type=int, default=90, help='number of frames')
    m.add_argument('--width', type=int, default=640, help='image width (height = 3/4)')
    m.add_argument('--fps', type=float, default=15.0, help='frame rate of the stamps')
    m.add_argument('--raw', action='store_true', help='sensor_msgs/Image instead of JPEG')
    m.add_argument('--force', action='store_true', help='overwrite an existing bag')
    m.add_argument('--tf-tilt-bias-deg', type=float, default=1.0,
                   help='calibration error of the /tf floor -> camera pose: tilt, degrees')
    m.add_argument('--tf-height-bias-m', type=float, default=0.02,
                   help='calibration error of the /tf floor -> camera pose: height, metres')
    m.add_argument('--domain', default='default', choices=('default', 'shifted'),
                   help='render style: shifted = colours, lighting, floor and lens never '
                        'used in training (training.synth.video_scene.shift_video_look)')
    m.add_argument('--categories', type=_categories, default=(),
                   help='mixed scenes: comma-separated categories, e.g. chair,table,sofa '
                        '(default: chairs only, the demo bag as ever)')
    m.add_argument('--objects', type=int, nargs=2, default=None, metavar=('MIN', 'MAX'),
                   help='objects per scene (default 1 3; with N categories N N+1)')
    e = sub.add_parser('evaluate', help='evaluate a bag offline and/or live through the node')
    e.add_argument('--bag', type=Path, default=DEFAULT_BAG, help='input rosbag2 folder')
    e.add_argument('--out', type=Path, default=DEFAULT_EVAL, help='output folder')
    e.add_argument('--offline', action='store_true', help='run the pipeline in-process')
    e.add_argument('--live', action='store_true', help='play the bag to the node over DDS')
    e.add_argument('--start-node', action='store_true',
                   help='start the chair_detector node for --live (else it must be running, '
                        "serving the bag's categories)")
    e.add_argument('--rate', type=float, default=15.0, help='live playback rate, frames/s')
    e.add_argument('--loops', type=int, default=1, help='live playback loops')
    e.add_argument('--model', type=Path, default=None,
                   help='manifest.json of the model of its category (default: packaged)')
    e.add_argument('--models', action='append', default=None, metavar='CAT=PATH[,CAT=PATH]',
                   help='model (folder or manifest.json) per category, repeatable; '
                        'categories without one use the packaged model')
    e.add_argument('--backend', default='onnxruntime', choices=('onnxruntime', 'torch',
                                                                'tensorrt'))
    e.add_argument('--threads', type=int, default=1, help='engine threads (offline)')
    e.add_argument('--floor-frame', default='',
                   help='TF frame of the floor in the bag (make-demo writes "floor"): the '
                        'floor plane then fixes the metric scale, offline and in a node started '
                        'with --start-node (give a running node pose.floor_frame yourself)')
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == 'make-demo':
        mixed = len(args.categories) > 1
        if args.out is None:
            args.out = DEFAULT_MIXED_BAG if mixed else DEFAULT_BAG
        if args.seed is None:
            args.seed = 1 if mixed else 7
        if args.out.exists():
            if not args.force:
                sys.exit(f'{args.out} exists (use --force to overwrite)')
            import shutil

            shutil.rmtree(args.out)
        counts = make_demo(args.out, args.seed, args.frames, args.width, args.fps,
                           not args.raw, DetectionNoise(),
                           objects=tuple(args.objects) if args.objects else None,
                           tilt_bias_deg=args.tf_tilt_bias_deg,
                           height_bias_m=args.tf_height_bias_m, domain=args.domain,
                           categories=args.categories)
        size = sum(p.stat().st_size for p in args.out.rglob('*') if p.is_file())
        print(f'wrote {args.out} ({size / 1e6:.1f} MB): '
              + ', '.join(f'{t} {n}' for t, n in sorted(counts.items())))
        return
    if not (args.offline or args.live):
        args.offline = args.live = True
    result = evaluate(args.bag, args.out, args.offline, args.live, args.start_node, args.rate,
                      args.loops, args.model, args.backend, args.threads, args.floor_frame,
                      models=_models(args.models))
    print(summary(result))
    print('wrote: ' + ', '.join(result['files']))


if __name__ == '__main__':
    main()
