"""Replay soak of the chair_detector node: hours on a robot, compressed into one run.

    python bench/bench_soak.py [--minutes 1] [--loop-minutes 3] [--rate 15] [--out DIR]

The demo bag (`training.bag make-demo`: 640x480 JPEG, 1 to 3 chairs per frame, detections
with noise, misses and false positives) is played to the node over DDS at --rate, over and
over, re-stamped with the wall clock; every --loop-minutes the stamps jump back by that much
(as when a bag player loops), so the node resets its tracks each time. The node serves every
installed category model (today: chair), with the floor from the bag's /tf as in `make
demo`. Each minute records the node's RSS (from /proc, the
node's own /diagnostics `memory.rss_mb` beside it), frames sent and answered, stamp-to-objects
latency p50 / p95, the track ids that appeared for the first time (churn) and the node's
clock-jump and drop counters.

Targets (issue 20): RSS flat (mean of the last third within 2 % of the first third), no
growth in latency, no unexplained drops. Prints and saves bench_soak.{json,md} and
bench_soak.png (RSS and latency by minute) in --out (default bench/results).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import signal
import sys
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'bench'))
RESULTS = REPO / 'bench' / 'results'
DEMO_BAG = REPO / 'out' / 'demo' / 'chair_demo'

from bench_node import pct, rss_mb  # noqa: E402 - after the path set-up above


def minute_row(minute: int, sent: list, recording: list, rss: float, first_seen: set,
               diag: dict) -> dict:
    """One row of the table from the frames sent and the node's outputs of one minute."""
    from perception_3dinn.ros.convert import stamp_to_ns

    by_stamp = {s.stamp_ns: s for s in sent}
    latencies, new_tracks, objects = [], 0, 0
    for rx, msg in recording:
        s = by_stamp.get(stamp_to_ns(msg.header.stamp))
        if s is None:
            continue
        latencies.append((rx - s.sent_ns) * 1e-6)
        for obj in msg.objects:
            objects += 1
            if obj.track_id not in first_seen:
                first_seen.add(obj.track_id)
                new_tracks += 1
    return {'minute': minute, 'rss_mb': rss, 'node_rss_mb': diag.get('memory.rss_mb', np.nan),
            'sent': len(sent), 'answered': len(latencies),
            'dropped': len(sent) - len(latencies), 'objects': objects,
            'latency_ms_p50': pct(latencies, 50), 'latency_ms_p95': pct(latencies, 95),
            'new_track_ids': new_tracks,
            'clock_jumps': diag.get('total.clock_jumps', 0.0),
            'node_dropped_latest_wins': diag.get('total.dropped.latest_wins', 0.0),
            'node_dropped_unmatched': diag.get('total.dropped.unmatched', 0.0)}


def soak(args: argparse.Namespace) -> dict:
    from perception_3dinn.ros.replay import LiveReplay, load_frames
    from training.bag import make_demo, start_node

    if not (DEMO_BAG / 'metadata.yaml').exists():
        from training.bag import DetectionNoise

        make_demo(DEMO_BAG, seed=7, frames=90, width=640, fps=15.0, compressed=True,
                  noise=DetectionNoise())
    frames = load_frames(DEMO_BAG)
    log = REPO / 'out' / 'bench' / 'bench_soak_node.log'
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = start_node(None, 'onnxruntime', True, log, ['pose.floor_frame:=floor'])
    replay = LiveReplay(compressed=True, topics=('/chair_detector/objects', '/tf',
                                                 '/diagnostics'))
    rows: list[dict] = []
    try:
        replay.wait_ready(90.0)
        replay.warm_up(frames[0], 60.0)
        shift_ns, first_seen = 0, set()
        loop_s = args.loop_minutes * 60.0
        t_start = time.monotonic()
        per_minute = int(round(60.0 * args.rate))
        for minute in range(int(round(args.minutes))):
            if minute > 0 and (minute * 60.0) % loop_s < 1e-6:
                shift_ns += int(loop_s * 1e9)  # the bag loops: stamps jump back
            sequence = [frames[k % len(frames)] for k in range(minute * per_minute,
                                                               (minute + 1) * per_minute)]
            sent = replay.play(sequence, args.rate, stamp_shift_ns=shift_ns)
            replay.drain(idle_s=0.3, max_s=5.0)
            chunk = replay.take_recording()  # per minute: the bench's memory stays flat too
            diag_msgs = chunk.decoded('/diagnostics')
            diag = ({kv.key: float(kv.value) for kv in diag_msgs[-1][1].status[0].values
                     if _is_number(kv.value)} if diag_msgs else {})
            row = minute_row(minute + 1, sent, chunk.decoded('/chair_detector/objects'),
                             rss_mb(proc.pid), first_seen, diag)
            rows.append(row)
            print(f"minute {row['minute']:3d}: RSS {row['rss_mb']:.1f} MB, "
                  f"{row['answered']}/{row['sent']} answered, p50 {row['latency_ms_p50']:.1f} "
                  f"ms, p95 {row['latency_ms_p95']:.1f} ms, {row['new_track_ids']} new "
                  f"tracks, {time.monotonic() - t_start:.0f} s", flush=True)
    finally:
        replay.close()
        proc.terminate()
        proc.wait(timeout=30)
    return {'rows': rows}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def summarise(rows: list[dict]) -> dict:
    n = len(rows)
    third = max(n // 3, 1)
    first, last = rows[:third], rows[-third:]
    rss_first = float(np.mean([r['rss_mb'] for r in first]))
    rss_last = float(np.mean([r['rss_mb'] for r in last]))
    return {
        'minutes': n,
        'rss_mb_first_third': rss_first, 'rss_mb_last_third': rss_last,
        'rss_change_pct': 100.0 * (rss_last - rss_first) / rss_first,
        'latency_ms_p50_first_third': float(np.median([r['latency_ms_p50'] for r in first])),
        'latency_ms_p50_last_third': float(np.median([r['latency_ms_p50'] for r in last])),
        'sent': sum(r['sent'] for r in rows), 'answered': sum(r['answered'] for r in rows),
        'dropped': sum(r['dropped'] for r in rows),
        'node_dropped_latest_wins': rows[-1]['node_dropped_latest_wins'] if rows else 0.0,
        'clock_jumps': rows[-1]['clock_jumps'] if rows else 0.0,
        'new_track_ids': sum(r['new_track_ids'] for r in rows),
    }


def write(results: Path, args: argparse.Namespace, rows: list[dict], summary: dict) -> None:
    command = ' '.join(['python bench/bench_soak.py'] + sys.argv[1:])
    results.mkdir(parents=True, exist_ok=True)
    (results / 'bench_soak.json').write_text(json.dumps(
        {'command': command, 'summary': summary, 'rows': rows}, indent=1))
    keys = ['minute', 'rss_mb', 'node_rss_mb', 'sent', 'answered', 'dropped', 'objects',
            'latency_ms_p50', 'latency_ms_p95', 'new_track_ids', 'clock_jumps',
            'node_dropped_latest_wins', 'node_dropped_unmatched']
    lines = [f'# bench_soak: {summary["minutes"]} minutes of replay', '',
             f'Command: `{command}` ({time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, '
             f'{os.cpu_count()} cores; stamps jump back every {args.loop_minutes:g} min).', '',
             '| ' + ' | '.join(summary) + ' |', '|' + ' --- |' * len(summary),
             '| ' + ' | '.join(f'{v:.2f}' if isinstance(v, float) else str(v)
                               for v in summary.values()) + ' |', '',
             '| ' + ' | '.join(keys) + ' |', '|' + ' --- |' * len(keys)]
    for r in rows:
        lines.append('| ' + ' | '.join(f'{r[k]:.1f}' if isinstance(r[k], float) else str(r[k])
                                       for k in keys) + ' |')
    (results / 'bench_soak.md').write_text('\n'.join(lines) + '\n')
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    minutes = [r['minute'] for r in rows]
    a.plot(minutes, [r['rss_mb'] for r in rows], 'o-')
    a.set_ylabel('node RSS (MB)')
    a.grid(alpha=0.3)
    b.plot(minutes, [r['latency_ms_p50'] for r in rows], 'o-', label='p50')
    b.plot(minutes, [r['latency_ms_p95'] for r in rows], 's-', label='p95')
    b.set_ylabel('stamp to objects (ms)')
    b.set_xlabel('minute')
    b.legend()
    b.grid(alpha=0.3)
    fig.suptitle(f'bench_soak: {command}', fontsize=8)
    fig.tight_layout()
    fig.savefig(results / 'bench_soak.png', dpi=100)
    print('\n'.join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=float, default=1.0, help='length of the soak')
    parser.add_argument('--loop-minutes', type=float, default=3.0,
                        help='the stamps jump back by this much, this often (a looping bag)')
    parser.add_argument('--rate', type=float, default=15.0, help='frames per second')
    parser.add_argument('--domain', type=int, default=160 + os.getpid() % 20)
    parser.add_argument('--out', type=Path, default=RESULTS, help='folder for the tables')
    args = parser.parse_args()
    # A stopped soak (SIGTERM, e.g. `timeout`) still stops its node (the finally above).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit('bench_soak: terminated'))
    os.environ['ROS_DOMAIN_ID'] = str(args.domain)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    args.out.mkdir(parents=True, exist_ok=True)
    rows = soak(args)['rows']
    write(args.out, args, rows, summarise(rows))


if __name__ == '__main__':
    main()
