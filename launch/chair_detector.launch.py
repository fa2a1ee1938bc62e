"""Start the chair_detector lifecycle node (and optionally RViz).

Usage:
    ros2 launch perception_3dinn chair_detector.launch.py
    ros2 launch perception_3dinn chair_detector.launch.py \\
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info \\
        detections_topic:=/yolo/detections backend:=tensorrt rviz:=true \\
        floor_frame:=base_link

The node gets config/fastdds_large_images.xml as its Fast DDS profile unless
FASTDDS_DEFAULT_PROFILES_FILE is set (the camera driver needs the same for raw images).
The node configures and activates itself (parameter autostart in the config file); set
autostart to false there to leave the transitions to a lifecycle manager.
Show all arguments: ros2 launch perception_3dinn chair_detector.launch.py --show-args
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.launch_description import LaunchDescription
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare('perception_3dinn')
    args = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its outputs'),
        DeclareLaunchArgument('image_topic', default_value='/camera/image_raw',
                              description='sensor_msgs/Image topic (with compressed:=true, '
                                          'its /compressed sub-topic is used)'),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera/camera_info',
                              description='sensor_msgs/CameraInfo topic of that camera'),
        DeclareLaunchArgument('detections_topic', default_value='/detections',
                              description='vision_msgs/Detection2DArray topic of the 2D '
                                          'detector'),
        DeclareLaunchArgument('config', default_value=PathJoinSubstitution(
                                  [share, 'config', 'chair_detector.yaml']),
                              description='parameter file of the node'),
        DeclareLaunchArgument('backend', default_value='onnxruntime',
                              choices=['onnxruntime', 'tensorrt', 'torch'],
                              description='inference engine'),
        DeclareLaunchArgument('compressed', default_value='false', choices=['true', 'false'],
                              description='subscribe to <image_topic>/compressed'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              choices=['true', 'false'],
                              description='use /clock (replaying a bag with --clock)'),
        DeclareLaunchArgument('floor_frame', default_value='base_footprint',
                              description='TF frame whose z = 0 plane is the floor (z up): '
                                          'fixes the metric scale much better than the size '
                                          "model alone; '' to go without (the node warns "
                                          'while the frame is missing from TF)'),
        DeclareLaunchArgument('rviz', default_value='false', choices=['true', 'false'],
                              description='also start RViz with rviz/chair_detector.rviz'),
    ]
    image = LaunchConfiguration('image_topic')
    detector = LifecycleNode(
        package='perception_3dinn',
        executable='chair_detector',
        name='chair_detector',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        parameters=[
            LaunchConfiguration('config'),
            {
                'model.backend': LaunchConfiguration('backend'),
                'pose.floor_frame': LaunchConfiguration('floor_frame'),
                'input.compressed': ParameterValue(LaunchConfiguration('compressed'),
                                                   value_type=bool),
                'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                               value_type=bool),
            },
        ],
        # Raw camera images exceed Fast DDS's default shared-memory segment and are lost on a
        # best-effort subscription: the shipped profile applies unless the user set one.
        additional_env={'FASTDDS_DEFAULT_PROFILES_FILE': EnvironmentVariable(
            'FASTDDS_DEFAULT_PROFILES_FILE',
            default_value=PathJoinSubstitution([share, 'config', 'fastdds_large_images.xml']))},
        remappings=[
            ('camera/image_raw', image),
            ('camera/image_raw/compressed', [image, '/compressed']),
            ('camera/camera_info', LaunchConfiguration('camera_info_topic')),
            ('detections', LaunchConfiguration('detections_topic')),
        ],
    )
    # The .rviz file names the un-namespaced topics; remapping them follows `namespace`
    # and `image_topic` (a relative target resolves against RViz's root namespace).
    rviz = Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        arguments=['-d', PathJoinSubstitution([share, 'rviz', 'chair_detector.rviz'])],
        parameters=[{'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                                    value_type=bool)}],
        remappings=[
            ('/chair_detector/markers',
             [LaunchConfiguration('namespace'), '/chair_detector/markers']),
            ('/camera/image_raw', image),
        ],
        condition=IfCondition(LaunchConfiguration('rviz')),
    )
    return LaunchDescription([*args, detector, rviz])
