"""One frame of the `chair_detector` node: the pipeline on a paired image and detections,
then every output message with the input image's stamp (poses first).

`NodeFrames` is a mixin of `perception_3dinn.ros.node.ChairDetector` (it uses the state the
node's __init__ creates: settings, category, pipeline, publishers, stats).
"""

from __future__ import annotations

import time
from typing import Any

from std_msgs.msg import Header

from perception_3dinn.inference.pipeline import is_filtered
from perception_3dinn.ros import convert, inputs, markers
from perception_3dinn.ros.node_inputs import CAMERA_INFO_TOPIC
from perception_3dinn.ros.params import NodeSettings
from perception_3dinn.skeleton import Category

# Outputs published first, as soon as they are built: what a grasping pipeline waits for.
PRIMARY_OUTPUTS = frozenset({'objects', 'tf'})
# Image InputError kinds counted apart from total.bad.image.
_IMAGE_ERROR_COUNTERS = {'size': 'bad.camera_info_size'}


class NodeFrames:
    """Frame processing and publishing of the node (a mixin of ChairDetector)."""

    def process(self, stamp_ns: int, image_msg: Any, det_msg: Any,
                paired_ns: int | None = None) -> None:
        """Run the pipeline on one paired frame and publish every output with its stamp.

        Args:
            stamp_ns: the image stamp; image_msg, det_msg: the paired messages (det_msg None
                in no-detector mode); paired_ns: wall time the pair was complete.
        """
        settings, category, pipe = self.settings, self.category, self._pipe
        if settings is None or category is None or pipe is None:
            return
        with self._intr_lock:
            intr = self._intrinsics
        if intr is None:
            self.stats.count('dropped.no_camera_info')
            self.warn_throttled(
                'no_camera_info',
                f'no valid camera_info on {self.resolve_topic_name(CAMERA_INFO_TOPIC)} yet: '
                'frames are dropped until one arrives (check the topic and its QoS)')
            return
        frame = settings['output.camera_frame'] or image_msg.header.frame_id
        problem = inputs.frame_id_problem(frame)
        if problem is not None:
            self.stats.count('bad.frame_id')
            self.warn_throttled(
                'frame_id:invalid', f'image {problem}: frame dropped (it would become the '
                "parent frame on /tf); fix the camera driver's frame_id or set "
                'output.camera_frame')
            return
        t0 = time.perf_counter()
        notes: inputs.Notes = []
        try:
            rgb = inputs.image_to_rgb(image_msg, (intr.width, intr.height),
                                      settings['input.max_image_pixels'], notes)
            t_image = time.perf_counter()
        except inputs.InputError as err:
            self.stats.count(_IMAGE_ERROR_COUNTERS.get(err.kind, 'bad.image'))
            self.warn_throttled(f'image:{err.kind}', f'image dropped: {err}')
            return
        for kind, text in notes:
            self.stats.count(f'mismatch.image_{kind}')
            self.warn_throttled(f'image_note:{kind}', text)
        h, w = rgb.shape[:2]
        if det_msg is not None:
            notes = []
            boxes = inputs.detections_to_boxes(det_msg, notes)
            self._say_detection_notes(notes)
        else:
            classes = settings['filter.class_ids']
            boxes = [inputs.no_detector_box(
                w, h, settings['input.no_detector_box'], settings['input.center_box_fraction'],
                classes[0] if classes else category.name)]
        floor = self._floor
        if self._tf is not None and frame:
            floor = self._floor_at(settings, frame, stamp_ns)
        wanted = self._wanted_outputs(settings)
        # Voxels are made after the poses went out, and only when someone takes them.
        need_voxels = 'voxels' in wanted or ('markers' in wanted
                                              and settings['output.voxel_markers'])
        result = pipe.process(rgb, intr, boxes, stamp_ns * 1e-9, floor=floor, voxels=False)
        bad = [(i, r) for i, r in result.skipped if not is_filtered(r)]
        if bad:
            self.stats.count('bad.boxes', len(bad))
            self.warn_throttled(
                'boxes', 'detection boxes skipped: ' + '; '.join(
                    f'#{i}: {r}' for i, r in bad[:5]))
        if not frame:
            self.stats.count('bad.frame_id')
            self.warn_throttled(
                'frame_id', 'image has an empty header.frame_id: outputs and /tf carry no '
                'parent frame, which TF listeners reject; set frame_id in the camera driver '
                'or the output.camera_frame parameter')
        header = Header(stamp=image_msg.header.stamp, frame_id=frame)
        # The poses (objects, TF) go out first; voxels, 3D detections and markers follow.
        kept, build_s, publish_s = self._build_and_publish(
            settings, result, header, category, wanted & PRIMARY_OUTPUTS)
        primary_ns = self._now_ns()
        rest = wanted - PRIMARY_OUTPUTS
        if need_voxels:
            pipe.add_voxels(result)
        if rest:
            _, more_build_s, more_publish_s = self._build_and_publish(
                settings, result, header, category, rest)
            build_s += more_build_s
            publish_s += more_publish_s
        done = time.perf_counter()
        self.stats.count('processed')
        self.stats.count('objects', len(kept))
        start_ns = time.time_ns() - int((done - t0) * 1e9)
        self.stats.add(
            latency_ms=(primary_ns - stamp_ns) * 1e-6,
            latency_all_ms=(self._now_ns() - stamp_ns) * 1e-6, processing_ms=(done - t0) * 1e3,
            pipeline_ms=float(result.timings_ms.get('total', float('nan'))),
            model_ms=float(result.timings_ms.get('network', float('nan'))),
            image_ms=(t_image - t0) * 1e3, build_ms=build_s * 1e3, publish_ms=publish_s * 1e3,
            queue_ms=(start_ns - paired_ns) * 1e-6 if paired_ns else float('nan'))

    def _build_and_publish(self, settings: NodeSettings, result: Any, header: Header,
                           category: Category, outputs: frozenset[str]) -> tuple[list, float,
                                                                                 float]:
        """Build and publish `outputs` of one frame: (kept objects, build s, publish s)."""
        t_build = time.perf_counter()
        msgs = convert.frame_messages(result, header, self.categories or category,
                                      settings['output.frame_prefix'],
                                      self._track_ids, settings['filter.min_object_score'],
                                      outputs)
        t_publish = time.perf_counter()
        self._publish(settings, header, category, msgs, outputs)
        return msgs['kept'], t_publish - t_build, time.perf_counter() - t_publish

    _OUTPUT_PARAMS = {'objects': 'output.publish_structures', 'voxels': 'output.publish_voxels',
                      'detections3d': 'output.publish_detections3d', 'tf': 'output.publish_tf',
                      'markers': 'output.publish_markers'}

    def _wanted_outputs(self, settings: NodeSettings) -> frozenset[str]:
        """Outputs enabled by parameter that someone subscribes to (the others are not even
        built: markers and voxels cost real time)."""
        pubs = self._pubs
        return frozenset(key for key, param in self._OUTPUT_PARAMS.items()
                         if settings[param] and key in pubs
                         and pubs[key].get_subscription_count() > 0)

    def _publish(self, settings: NodeSettings, header: Header, category: Category,
                 msgs: dict[str, Any], wanted: frozenset[str]) -> None:
        pubs = self._pubs
        if not pubs:
            return
        if 'objects' in wanted:
            pubs['objects'].publish(msgs['objects'])
        if 'voxels' in wanted:
            pubs['voxels'].publish(msgs['voxels'])
        if 'detections3d' in wanted:
            pubs['detections3d'].publish(msgs['detections3d'])
        if 'tf' in wanted and msgs['tf'].transforms:
            pubs['tf'].publish(msgs['tf'])
        if 'markers' in wanted:
            # Voxel cubes are the costly markers: at most every voxel_marker_period_s, with
            # a lifetime that bridges the gap.
            threshold, period = None, settings['output.voxel_marker_period_s']
            now = time.monotonic()
            if settings['output.voxel_markers'] and now - self._last_voxel_markers >= period:
                threshold = settings['output.voxel_threshold']
                self._last_voxel_markers = now
            lifetime = settings['output.marker_lifetime_s']
            voxel_life = lifetime + period if lifetime > 0 else 0.0
            pubs['markers'].publish(markers.frame_markers(
                msgs['kept'], header, self.categories or category, lifetime, threshold,
                voxel_life))
