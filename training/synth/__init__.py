"""The synthetic world: procedural objects, base shapes, renderer, images, videos, data sets."""
