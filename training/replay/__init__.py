"""Bag tools behind ``python -m training.bag``, one step of the data flow per module.

- :mod:`training.replay.demo`: a synthetic video (one category or mixed) -> the demo bag:
  images, camera_info, simulated detections, ground truth, /tf floor -> camera.
- :mod:`training.replay.offline`: the bag through the pipeline in-process (`Pipeline`, or
  `MultiPipeline` for several categories).
- :mod:`training.replay.live`: the bag through the node over DDS; the output bag.
- :mod:`training.replay.accuracy`: predictions against the bag's ground truth, overall and
  per category (matching within a category, rotation modulo the category's symmetry).
- :mod:`training.replay.report`: plots, the annotated video and the printed summary.
- :mod:`training.replay.evaluate`: which models serve the bag's categories, and the whole
  evaluation (metrics.json and the files above).
"""
