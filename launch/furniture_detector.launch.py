"""Start the detector serving every installed category (chair, table, ...) in one node.

Usage:
    ros2 launch perception_3dinn furniture_detector.launch.py
    ros2 launch perception_3dinn furniture_detector.launch.py \\
        image_topic:=/camera/color/image_raw detections_topic:=/yolo/detections rviz:=true

Everything of chair_detector.launch.py (its arguments are passed through, see its --show-args)
with the node parameter categories set to ['all']: one model per installed category under
perception_3dinn/data/models/, detections routed by the node's class_map (docs/node.md,
"Several categories in one node").
"""

from launch.actions import IncludeLaunchDescription
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.actions import SetParameter
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare('perception_3dinn')
    chair = IncludeLaunchDescription(PythonLaunchDescriptionSource(
        PathJoinSubstitution([share, 'launch', 'chair_detector.launch.py'])))
    return LaunchDescription([SetParameter(name='categories', value=['all']), chair])
