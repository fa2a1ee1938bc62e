"""ROS 2 boundary of perception_3dinn: the `chair_detector` lifecycle node.

The only part of the package that imports rclpy or message types. Messages are converted
into domain objects once, here (``convert``); everything after that is plain library code.
"""
