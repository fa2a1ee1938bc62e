"""The chair_detector node over real DDS: latency, drops under overload, memory.

    python bench/bench_node.py [--frames 30] [--soak-minutes 0] [--model manifest.json]

Starts the real node executable (ONNX Runtime on CPU, 1 thread) on a private ROS_DOMAIN_ID
and plays a rendered 640x480 sequence with one chair per frame (sensor_msgs/Image rgb8,
re-stamped with the wall clock) through DDS:

1. offline: the same frames through the pipeline in-process (model time per frame), back
   to back and once more paced at the nominal rate: a pipeline that waits 100 ms between
   frames runs slower (colder caches), so the paced time is the fair model time for a
   camera-rate node; both are reported, with the target checked against each;
2. nominal: live at a rate well below what the node serves: the node's own stamp-to-publish
   latency of the poses (objects and /tf, published first; and to its last output)
   (from its /diagnostics) and stamp-to-receipt in this process (p50/p95), ROS
   overhead = stamp-to-receipt - offline pipeline time of the same frame;
3. overload: live at twice the rate the node can serve: latency must stay bounded (latest
   wins) and the drops are counted;
4. memory: the node's resident set (VmRSS) sampled through the run (and over an optional
   looped soak of --soak-minutes), first vs last third;
5. transport floor: the same raw image between two bare rclpy processes (bench/
   transport_probe.py), stamp -> callback: what any Python subscriber pays before the node
   does anything; measured with glibc's default malloc and with the subscriber tuned as the
   node is (input.keep_large_buffers). The node's own time is split in /diagnostics into
   input delay, queue, image conversion, pipeline, message building and publishing.

With --subscribe core the player subscribes only to objects, /tf and /diagnostics (the node
then builds no markers, voxels or 3D detections); tables get a _core suffix.

--node-param passes parameters to the node: with `--node-param system.cpu_dma_latency_us:=0`
the node holds a Linux PM QoS request while active, so that idle CPUs wake at once (the
offline runs are measured without it). With --cpu-dma-latency-us N the bench holds such a
request (/dev/cpu_dma_latency, root only) for the whole run, offline and live, as tuned's
latency-performance profile does. Both show how much of the latency is the machine's idle
states (a core that slept between two frames wakes slowly) rather than our code.

Prints and saves bench/results/bench_node.{json,md} (bench_node_soak.* with a soak).
Targets (issue 6): latency p50 <= model time + 3 ms; bounded latency and counted drops at 2x;
RSS <= 400 MB and flat.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import subprocess
import sys
import threading
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / 'bench' / 'results'
PROFILE = REPO / 'config' / 'fastdds_large_images.xml'


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MB (from /proc)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024.0
    return float('nan')


class RssSampler:
    """Samples a process's RSS every `period_s` in a thread."""

    def __init__(self, pid: int, period_s: float = 0.5) -> None:
        self.pid, self.period_s = pid, period_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic() - t0, rss_mb(self.pid)))
            except OSError:
                return
            self._stop.wait(self.period_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def cpuidle_driver() -> str:
    try:
        return Path('/sys/devices/system/cpu/cpuidle/current_driver').read_text().strip()
    except OSError:
        return 'unknown'


def bench_bag(frames: int, path: Path) -> Path:
    """A rendered 640x480 raw-image bag with one chair and exact detections (cached)."""
    from training.bag import DetectionNoise, make_demo

    if not (path / 'metadata.yaml').exists():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        make_demo(path, seed=11, frames=frames, width=640, fps=15.0, compressed=False,
                  noise=DetectionNoise(jitter=0.02, miss_prob=0.0, false_positive_prob=0.0),
                  objects=(1, 1))
    return path


SUBSCRIBERS = {
    'all': None,  # every output, as with RViz open
    'core': ('/chair_detector/objects', '/tf', '/diagnostics'),  # a grasping pipeline
}


def live_phase(frames: list, rate_hz: float, loops: int, subscribe: str = 'all') -> dict:
    from perception_3dinn.ros.convert import stamp_to_ns
    from perception_3dinn.ros.replay import LiveReplay

    replay = LiveReplay(compressed=False, topics=SUBSCRIBERS[subscribe])
    try:
        replay.wait_ready(60.0)
        replay.warm_up(frames[0], 60.0)
        sent = []
        for _ in range(loops):
            sent += replay.play(frames, rate_hz, restamp=True)
        replay.drain(idle_s=1.5)
    finally:
        replay.close()
    by_stamp = {s.stamp_ns: s for s in sent}
    lat, idx = [], []
    for rx, msg in replay.recording.decoded('/chair_detector/objects'):
        s = by_stamp.get(stamp_to_ns(msg.header.stamp))
        if s is not None:
            lat.append((rx - s.stamp_ns) * 1e-6)
            idx.append(s.index)
    diag = replay.recording.decoded('/diagnostics')
    values = {kv.key: kv.value for kv in diag[-1][1].status[0].values} if diag else {}
    first = {kv.key: kv.value for kv in diag[0][1].status[0].values} if diag else {}
    return {'rate_hz': rate_hz, 'sent': len(sent), 'answered': len(lat),
            'dropped': len(sent) - len(lat),
            'node_latest_wins_drops_total': float(values.get('total.dropped.latest_wins',
                                                             'nan')),
            # Where unanswered frames went: the node's own counters over this phase (from
            # its first to its last /diagnostics message; the warm-up frames included).
            'node_totals': {k[len('total.'):]: float(v) - float(first.get(k, 0.0))
                            for k, v in values.items() if k.startswith('total.')},
            # The node's own stamp-to-publish latency (its last 300 frames).
            'node_latency_ms_p50': float(values.get('latency_ms.p50', 'nan')),
            'node_latency_ms_p95': float(values.get('latency_ms.p95', 'nan')),
            'node_latency_all_ms_p50': float(values.get('latency_all_ms.p50', 'nan')),
            'node_breakdown_ms_p50': {
                k: float(values.get(f'{k}_ms.p50', 'nan'))
                for k in ('input_delay', 'queue', 'processing', 'pipeline', 'model', 'image',
                          'build', 'publish')},
            'latency_ms': lat, 'index': idx}


def transport_floor(count: int = 80, rate_hz: float = 10.0, tuned: bool = False) -> dict:
    """What rclpy alone costs for the bench image: stamp -> callback between two processes
    (with `tuned`, the subscriber's malloc tuned as the node's input.keep_large_buffers)."""
    probe = [sys.executable, str(REPO / 'bench' / 'transport_probe.py')]
    sub = subprocess.Popen(probe + ['sub', '--seconds', str(count / rate_hz + 6.0)]
                           + (['--keep-large-buffers'] if tuned else []),
                           stdout=subprocess.PIPE, text=True)
    try:
        subprocess.run(probe + ['pub', '--count', str(count), '--rate', str(rate_hz)],
                       check=True, timeout=120)
        out, _ = sub.communicate(timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
    return json.loads(out.strip().splitlines()[-1])


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float('nan')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=30, help='frames of the bench sequence')
    parser.add_argument('--model', type=Path, default=None, help='manifest.json')
    parser.add_argument('--soak-minutes', type=float, default=0.0,
                        help='extra looped replay at the nominal rate, for RSS flatness')
    parser.add_argument('--domain', type=int, default=180 + os.getpid() % 20)
    parser.add_argument('--fastdds-profile', default=str(PROFILE),
                        help="Fast DDS XML profile for node and player ('' : Fast DDS defaults, "
                             'whose 512 KB shared-memory segments lose raw 640x480 images)')
    parser.add_argument('--subscribe', choices=sorted(SUBSCRIBERS), default='all',
                        help='outputs the player subscribes to (the node builds only those): '
                        'all (as with RViz open) or core (objects, /tf, /diagnostics)')
    parser.add_argument('--cpu-dma-latency-us', type=int, default=None,
                        help='hold this PM QoS CPU wake-up latency during the run (root; '
                        'e.g. 0: idle CPUs poll instead of sleeping); default: leave it')
    parser.add_argument('--node-param', action='append', default=[], metavar='NAME:=VALUE',
                        help='a parameter of the node over config/chair_detector.yaml '
                        '(repeatable), e.g. system.cpu_dma_latency_us:=0')
    parser.add_argument('--out', type=Path, default=RESULTS, help='folder for the tables')
    args = parser.parse_args()
    from perception_3dinn.ros.pm_qos import CpuWakeupLatency
    from perception_3dinn.ros.pm_qos import DEVICE as PM_QOS_DEVICE

    pm_qos = None
    if args.cpu_dma_latency_us is not None:
        try:
            pm_qos = CpuWakeupLatency(args.cpu_dma_latency_us)
        except OSError as err:
            parser.error(f'--cpu-dma-latency-us: cannot write {PM_QOS_DEVICE}: {err} '
                         '(needs root)')
    try:
        run(args)
    finally:
        if pm_qos is not None:
            pm_qos.close()


def run(args: argparse.Namespace) -> None:
    results = args.out
    os.environ['ROS_DOMAIN_ID'] = str(args.domain)
    if args.fastdds_profile:
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = args.fastdds_profile
    else:
        os.environ.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('OMP_NUM_THREADS', '1')

    from perception_3dinn.inference.manifest import default_model_dir
    from perception_3dinn.ros.pm_qos import latency_in_force
    from perception_3dinn.ros.replay import load_frames
    from training.bag import evaluate_offline, start_node

    manifest = args.model or default_model_dir('chair') / 'manifest.json'
    trained = manifest.is_file() and bool(json.loads(manifest.read_text()).get('trained'))
    if not manifest.is_file():
        manifest = REPO / 'out' / 'bench' / 'random_model' / 'manifest.json'
        if not manifest.is_file():
            subprocess.run([sys.executable, '-m', 'training.export', '--random-init',
                            '--out', str(manifest.parent)], check=True, capture_output=True)
    bag = bench_bag(args.frames, REPO / 'out' / 'bench' / f'node_bench_{args.frames}')
    frames = load_frames(bag)

    print('offline pipeline ...', flush=True)
    offline = evaluate_offline(frames, manifest, 'onnxruntime', 1)
    model_ms = float(np.median(offline['_frame_ms']))
    network_ms = offline['network_ms']['p50']
    nominal_rate = max(1.0, min(10.0, 250.0 / max(model_ms, 1.0)))
    print(f'offline pipeline at the nominal rate ({nominal_rate:.1f} Hz) ...', flush=True)
    paced = evaluate_offline(frames, manifest, 'onnxruntime', 1, period_s=1.0 / nominal_rate)
    paced_ms = float(np.median(paced['_frame_ms']))

    log = REPO / 'out' / 'bench' / 'bench_node_node.log'
    log.parent.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    proc = start_node(manifest, 'onnxruntime', False, log, args.node_param)
    sampler = RssSampler(proc.pid)
    try:
        print(f'nominal live run at {nominal_rate:.1f} Hz ...', flush=True)
        nominal = live_phase(frames, nominal_rate, loops=5, subscribe=args.subscribe)
        in_force = latency_in_force()  # while the node runs
        serve_hz = 1000.0 / max(pct(nominal['latency_ms'], 50), 1e-3)
        over_rate = 2.0 * serve_hz
        print(f'overload run at {over_rate:.1f} Hz (2 x {serve_hz:.1f}) ...', flush=True)
        overload = live_phase(frames, over_rate, loops=3, subscribe=args.subscribe)
        soak = None
        if args.soak_minutes > 0:
            loops = max(1, int(args.soak_minutes * 60 * nominal_rate / len(frames)))
            print(f'soak: {loops} loops at {nominal_rate:.1f} Hz ...', flush=True)
            soak = live_phase(frames, nominal_rate, loops=loops, subscribe=args.subscribe)
    finally:
        sampler.stop()
        proc.send_signal(2)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()

    print('rclpy transport floor (same image, no node) ...', flush=True)
    floor = transport_floor()
    floor_tuned = transport_floor(tuned=True)
    overhead = [lat - offline['_frame_ms'][i] for lat, i in
                zip(nominal['latency_ms'], nominal['index'])]
    overhead_paced = [lat - paced['_frame_ms'][i] for lat, i in
                      zip(nominal['latency_ms'], nominal['index'])]
    rss = [r for _, r in sampler.samples]
    third = max(1, len(rss) // 3)
    rows = {
        'model': str(manifest), 'trained_model': trained, 'image': '640x480 rgb8, 1 chair',
        'subscribed_outputs': ('all' if SUBSCRIBERS[args.subscribe] is None
                               else ', '.join(SUBSCRIBERS[args.subscribe])),
        'backend': 'onnxruntime cpu, 1 thread',
        'fastdds_profile': Path(args.fastdds_profile).name if args.fastdds_profile else 'default',
        'node_params': ', '.join(args.node_param) or 'config/chair_detector.yaml',
        'cpuidle_driver': cpuidle_driver(),
        'cpu_dma_latency_us_in_force': in_force if in_force is not None else 'unreadable',
        'offline_frame_ms_p50': model_ms, 'offline_network_ms_p50': network_ms,
        'offline_frame_at_nominal_rate_ms_p50': paced_ms,
        'nominal_rate_hz': nominal['rate_hz'],
        'node_stamp_to_publish_ms_p50': nominal['node_latency_ms_p50'],
        'node_stamp_to_publish_ms_p95': nominal['node_latency_ms_p95'],
        'node_stamp_to_last_output_ms_p50': nominal['node_latency_all_ms_p50'],
        **{f'node_{k}_ms_p50': v for k, v in nominal['node_breakdown_ms_p50'].items()},
        'rclpy_image_transport_ms_p50': floor['delay_ms_p50'],
        'rclpy_image_transport_ms_p95': floor['delay_ms_p95'],
        'rclpy_image_transport_keep_large_buffers_ms_p50': floor_tuned['delay_ms_p50'],
        'rclpy_image_transport_keep_large_buffers_ms_p95': floor_tuned['delay_ms_p95'],
        'latency_ms_p50': pct(nominal['latency_ms'], 50),
        'latency_ms_p95': pct(nominal['latency_ms'], 95),
        'ros_overhead_ms_p50': pct(overhead, 50), 'ros_overhead_ms_p95': pct(overhead, 95),
        'ros_overhead_vs_paced_ms_p50': pct(overhead_paced, 50),
        'nominal_dropped': nominal['dropped'], 'nominal_sent': nominal['sent'],
        'overload_rate_hz': overload['rate_hz'],
        'overload_latency_ms_p50': pct(overload['latency_ms'], 50),
        'overload_latency_ms_p95': pct(overload['latency_ms'], 95),
        'overload_latency_ms_max': max(overload['latency_ms'], default=float('nan')),
        'overload_sent': overload['sent'], 'overload_answered': overload['answered'],
        'overload_dropped': overload['dropped'],
        'node_latest_wins_drops_total': overload['node_latest_wins_drops_total'],
        'rss_mb_max': max(rss, default=float('nan')),
        'rss_mb_first_third_mean': float(np.mean(rss[:third])) if rss else float('nan'),
        'rss_mb_middle_third_mean': (float(np.mean(rss[third:2 * third])) if len(rss) > 2
                                     else float('nan')),
        'rss_mb_last_third_mean': float(np.mean(rss[-third:])) if rss else float('nan'),
        'rss_samples': len(rss),
        'soak_minutes': args.soak_minutes if soak else 0.0,
        'targets': {
            'node_stamp_to_publish_p50_le_model_plus_3ms':
                nominal['node_latency_ms_p50'] <= model_ms + 3.0,
            'node_stamp_to_publish_p50_le_model_at_nominal_rate_plus_3ms':
                nominal['node_latency_ms_p50'] <= paced_ms + 3.0,
            'stamp_to_receipt_p50_le_model_plus_3ms':
                pct(nominal['latency_ms'], 50) <= model_ms + 3.0,
            'overload_bounded_p95_le_3x_nominal_p95':
                pct(overload['latency_ms'], 95) <= 3 * max(pct(nominal['latency_ms'], 95),
                                                           model_ms),
            'rss_le_400mb': max(rss, default=1e9) <= 400.0,
        },
        'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores '
                   '(shared with other work: timings are noisy)',
        'command': 'python bench/bench_node.py ' + ' '.join(sys.argv[1:]),
    }
    name = ('bench_node_soak' if soak else 'bench_node') + (
        '' if args.subscribe == 'all' else f'_{args.subscribe}')
    if soak:
        rows['soak_latency_ms_p50'] = pct(soak['latency_ms'], 50)
        rows['soak_latency_ms_p95'] = pct(soak['latency_ms'], 95)
        rows['soak_sent'], rows['soak_dropped'] = soak['sent'], soak['dropped']
        totals = soak['node_totals']
        for key in ('image', 'processed', 'dropped.latest_wins', 'dropped.unmatched',
                    'dropped.no_camera_info', 'dropped.out_of_order', 'errors'):
            rows[f'soak_node_total_{key.replace(".", "_")}'] = totals.get(key, 0.0)
        rows['targets']['rss_flat_last_third_within_10pct_of_middle_third'] = bool(
            np.mean(rss[-third:]) <= 1.1 * np.mean(rss[third:2 * third]))
    (results / f'{name}.json').write_text(json.dumps(rows, indent=1) + '\n')
    kind = 'trained' if trained else 'untrained (random-init)'
    lines = ['# bench_node: chair_detector over DDS', '',
             f'`{rows["command"]}` on {rows["machine"]}; model {kind} ({rows["backend"]}), '
             f'{rows["image"]}, Fast DDS profile {rows["fastdds_profile"]}.', '',
             '| metric | value |', '| --- | --- |']
    for k, v in rows.items():
        if k in ('targets', 'command', 'machine', 'model'):
            continue
        lines.append(f'| {k} | {v:.2f} |' if isinstance(v, float) else f'| {k} | {v} |')
    for k, v in rows['targets'].items():
        lines.append(f'| target: {k} | {"met" if v else "NOT met"} |')
    text = '\n'.join(lines) + '\n'
    (results / f'{name}.md').write_text(text)
    print(text)


if __name__ == '__main__':
    main()
