"""Long fuzz of the chair_detector node: many malformed frames, the node's memory recorded.

    python bench/bench_fuzz.py [--frames 1000] [--seed 20] [--node-param NAME:=VALUE] [--out DIR]

Starts the node (raw images, reliable), sends --frames frames of the seeded mixed fuzz of
test/fuzz_inputs.py (every class of the outside fuzz runs plus random garbage images,
camera_info and detections) in bursts of 10, and samples the node's RSS every 500 frames
(from /proc). Afterwards a valid frame must be answered with one chair in front of the
camera. Prints and saves bench_fuzz{suffix}.{json,md} in --out (default bench/results); with
--node-param the suffix names the parameters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import sys
import time

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'test'))
sys.path.insert(0, str(REPO / 'bench'))
RESULTS = REPO / 'bench' / 'results'


def run(args: argparse.Namespace) -> dict:
    from bench_node import rss_mb
    from fuzz_inputs import good, mixed, publish
    from node_harness import Harness, model_manifest, NodeProcess

    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    manifest = model_manifest(REPO / 'out' / 'bench')
    node = NodeProcess(env, 'autostart:=true', f'model.manifest:={manifest}',
                       'input.image_qos_reliability:=reliable', *args.node_param)
    harness = Harness()
    samples = []
    try:
        harness.wait_inputs_matched()
        t, _ = harness.first_frame(1.0)
        samples.append((0, rss_mb(node.proc.pid)))
        t_start, last_t = time.monotonic(), t
        for k, (_, frame) in enumerate(mixed(args.seed, args.frames, t0=t + 1.0)):
            last_t = frame.t
            publish(harness, frame)
            if k % 10 == 9:
                end = time.monotonic() + 0.05
                harness.wait_for(lambda end=end: time.monotonic() >= end)
            if (k + 1) % 500 == 0:
                samples.append((k + 1, rss_mb(node.proc.pid)))
                print(f'{k + 1} frames, node RSS {samples[-1][1]:.1f} MB, '
                      f'{time.monotonic() - t_start:.0f} s', flush=True)
        t_end = last_t + 1.0
        publish(harness, good(t_end))
        answer = harness.frame_outputs(t_end)['objects'].objects
        ok = (len(answer) == 1 and math.isfinite(answer[0].pose.position.z)
              and answer[0].pose.position.z > 0 and node.alive())
        samples.append((args.frames, rss_mb(node.proc.pid)))
        log = node.log_since(0)
    finally:
        harness.close()
        node.stop()
    return {'samples': samples, 'answered_after': ok,
            'tracebacks': log.count('Traceback'), 'warnings': log.count('[WARN]')}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=1000, help='malformed frames to send')
    parser.add_argument('--seed', type=int, default=20)
    parser.add_argument('--node-param', action='append', default=[], metavar='NAME:=VALUE')
    parser.add_argument('--domain', type=int, default=140 + os.getpid() % 20)
    parser.add_argument('--out', type=Path, default=RESULTS, help='folder for the tables')
    args = parser.parse_args()
    os.environ['ROS_DOMAIN_ID'] = str(args.domain)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    result = run(args)
    command = ' '.join(['python bench/bench_fuzz.py'] + sys.argv[1:])
    suffix = ''.join('_' + p.split(':=')[0].split('.')[-1] + '_' + p.split(':=')[1]
                     for p in args.node_param)
    samples = result['samples']
    base = samples[1][1] if len(samples) > 2 else samples[0][1]
    lines = [f'# bench_fuzz: {args.frames} malformed frames', '',
             f'Command: `{command}` ({time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}).',
             '', f'Valid frame answered afterwards: {result["answered_after"]}; tracebacks in '
             f'the node log: {result["tracebacks"]}; warning lines: {result["warnings"]}.', '',
             '| frames sent | node RSS (MB) | change since 500 frames (%) |',
             '| --- | --- | --- |']
    for n, rss in samples:
        lines.append(f'| {n} | {rss:.1f} | {100.0 * (rss - base) / base:+.1f} |')
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f'bench_fuzz{suffix}.md').write_text('\n'.join(lines) + '\n')
    (args.out / f'bench_fuzz{suffix}.json').write_text(json.dumps(
        {'command': command, **result}, indent=1))
    print('\n'.join(lines))
    if not result['answered_after'] or result['tracebacks']:
        sys.exit('the node did not survive the fuzz as it should')


if __name__ == '__main__':
    main()
