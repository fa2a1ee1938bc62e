"""Generate synthetic data sets: rendered images, videos, or interpreter heatmaps.

Usage::

    python -m training.synthesize images --category chair --count 20000 --out datasets/x \\
        --seed 1 --size 128 [--workers 2] [--preview sheet.png]
    python -m training.synthesize videos --category chair --count 20 --out datasets/v \\
        --seed 1 [--frames 48] [--size 256] [--preview sheet.png]
    python -m training.synthesize videos --categories chair,table,sofa --objects 3 4 \\
        --count 4 --out datasets/mixed --seed 1 --frames 24 --size 320   # mixed scenes
    python -m training.synthesize heatmaps --category chair --count 100000 --out datasets/h \\
        --seed 1
    python -m training.synthesize scenes --category chair --count 150 --out datasets/f \\
        --seed 7 --camera 640x480 [--preview sheet.png]

Output: shards + manifest.json (see training/synth/dataset.py and docs/synthetic.md),
identical files for identical arguments. ``--preview`` writes a contact sheet of the first
samples with keypoints and skeleton drawn.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m training.synthesize',
                                description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='kind', required=True)
    for kind in ('images', 'videos', 'heatmaps', 'scenes'):
        s = sub.add_parser(kind, help=f'generate {kind}')
        s.add_argument('--category', default='chair', help='category name or JSON path')
        s.add_argument('--count', type=int, required=True,
                       help='number of samples (videos: number of videos)')
        s.add_argument('--out', type=Path, required=True, help='output folder')
        s.add_argument('--seed', type=int, default=0)
        s.add_argument('--size', type=int, default=128 if kind != 'videos' else 256,
                       help='image size in pixels (videos: width; height = 3/4 width)')
        s.add_argument('--preview', type=Path, default=None, help='contact sheet PNG')
        s.add_argument('--workers', type=int, default=1, help='parallel processes')
        s.add_argument('--shard-size', type=int,
                       default={'images': 500, 'videos': 4, 'heatmaps': 2000,
                                'scenes': 20}[kind])
        if kind == 'images':
            s.add_argument('--backgrounds', type=Path, default=None,
                           help='folder of background images mixed with procedural ones')
            s.add_argument('--occluder-prob', type=float, default=0.4)
            s.add_argument('--no-voxels', action='store_true', help='skip voxel grids')
            s.add_argument('--domain', default='default', choices=('default', 'shifted'),
                           help='render style (training.synth.domains)')
            s.add_argument('--meshes', type=Path, default=None,
                           help='render these user meshes instead of the procedural '
                                'generator (with --mesh-keypoints and --category RUN/NAME.json)')
            s.add_argument('--mesh-keypoints', type=Path, default=None,
                           help='keypoints.npz of python -m training.discover_category')
            s.add_argument('--up', default='auto', help='up axis of the user meshes')
        if kind == 'videos':
            s.add_argument('--frames', type=int, default=48, help='frames per video')
            s.add_argument('--domain', default='default', choices=('default', 'shifted'),
                           help='render style (training.synth.videos.shift_video_look)')
            s.add_argument('--objects', type=int, nargs=2, default=(1, 3),
                           metavar=('MIN', 'MAX'), help='objects per scene')
            s.add_argument('--categories', default='',
                           help='mixed scenes: comma-separated categories (e.g. '
                                'chair,table,sofa), each object one of them (--category is '
                                'then unused); see training/synth/video_labels.py')
        if kind == 'scenes':
            s.add_argument('--camera', default='640x480', choices=('640x480', '1280x720'),
                           help='camera preset (size and focal length)')
            s.add_argument('--objects', type=int, nargs=2, default=(2, 5),
                           metavar=('MIN', 'MAX'), help='objects per scene')
    return p


def _scenes(args) -> None:
    from perception_3dinn.skeleton import load_category
    from training.synth.preview import contact_sheet, draw_annotations, write_png
    from training.synth.scenes import generate_scene_dataset, render_scene, SceneConfig

    config = SceneConfig.preset(args.camera, objects=tuple(args.objects))
    manifest = generate_scene_dataset(args.category, args.count, args.out, args.seed, config,
                                      args.shard_size, args.workers)
    print(f'wrote {manifest["count"]} scenes ({args.camera}) to {args.out}')
    if args.preview:
        import numpy as np

        from training.synth.dataset import shard_rng

        cat = load_category(args.category)
        rng, tiles = shard_rng(args.seed, 0), []
        for _ in range(min(6, args.count)):
            s = render_scene(cat, rng, config)
            img = s['image']
            for i in np.flatnonzero(s['object_valid']):
                img = draw_annotations(img, s['keypoints_2d'][i], s['visible'][i], cat,
                                       s['box_visible'][i],
                                       label=f"{s['distance'][i]:.1f} m")
            tiles.append(img)
        write_png(args.preview, contact_sheet(tiles, cols=3))
        print(f'preview {args.preview}')


def _images(args) -> None:
    from perception_3dinn.skeleton import load_category
    from training.synth.generate import generate_image_dataset, preview_images, stats
    from training.synth.images import ImageConfig
    from training.synth.preview import contact_sheet, sample_tiles, write_png

    config = ImageConfig(size=args.size, occluder_prob=args.occluder_prob,
                         background_dir=str(args.backgrounds) if args.backgrounds else None,
                         voxels=not args.no_voxels, domain=args.domain,
                         mesh_dir=str(args.meshes) if args.meshes else None,
                         mesh_keypoints=str(args.mesh_keypoints) if args.mesh_keypoints
                         else None, mesh_up=args.up)
    manifest = generate_image_dataset(args.category, args.count, args.out, args.seed, config,
                                      args.shard_size, args.workers)
    print(f'wrote {manifest["count"]} images in {len(manifest["shards"])} shards to {args.out}')
    if args.preview:
        samples = preview_images(args.category, min(24, args.count, args.shard_size),
                                 args.seed, config)
        cat = load_category(args.category)
        write_png(args.preview, contact_sheet(sample_tiles(samples, cat), cols=6))
        print(f'preview {args.preview}: {stats(samples)}')


def _videos(args) -> None:
    from training.synth.videos import generate_video_dataset, preview_video, VideoConfig

    config = VideoConfig(width=args.size, height=args.size * 3 // 4, frames=args.frames,
                         objects=tuple(args.objects), domain=args.domain,
                         categories=tuple(c.strip() for c in args.categories.split(',')
                                          if c.strip()))
    manifest = generate_video_dataset(args.category, args.count, args.out, args.seed, config,
                                      args.shard_size, args.workers)
    print(f'wrote {manifest["count"]} videos ({manifest["category"]}) to {args.out}')
    if args.preview:
        preview_video(args.category, args.seed, config, args.preview)
        print(f'preview {args.preview}')


def _heatmaps(args) -> None:
    if importlib.util.find_spec('training.synth.heatmap_sampler') is None:
        sys.exit('training.synth.heatmap_sampler is not available')
    from training.synth.generate import generate_heatmap_dataset, heatmap_preview_tiles
    from training.synth.preview import contact_sheet, write_png

    manifest = generate_heatmap_dataset(args.category, args.count, args.out, args.seed,
                                        args.size, args.shard_size, args.workers)
    print(f'wrote {manifest["count"]} heatmap samples to {args.out}')
    if args.preview:
        write_png(args.preview, contact_sheet(heatmap_preview_tiles(args.out), cols=6))
        print(f'preview {args.preview}')


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    if args.count <= 0:
        sys.exit('--count must be positive')
    {'images': _images, 'videos': _videos, 'heatmaps': _heatmaps,
     'scenes': _scenes}[args.kind](args)


if __name__ == '__main__':
    main()
