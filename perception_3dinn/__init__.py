"""perception_3dinn: 3D object structure (3D Interpreter Network) for ROS 2 robots.

The library (everything but ``perception_3dinn.ros``) is plain Python/numpy and imports
neither rclpy nor torch; ``perception_3dinn.models`` (torch) is for training and export.
"""

__version__ = '0.1.0'
