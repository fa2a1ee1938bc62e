"""ament_python package perception_3dinn (see README.md)."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'perception_3dinn'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*']),
    package_data={PACKAGE: ['categories/*.json', 'data/models/*/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (os.path.join('share', PACKAGE, 'launch'), glob('launch/*.launch.py')),
        (os.path.join('share', PACKAGE, 'config'), glob('config/*.yaml') + glob('config/*.xml')),
        (os.path.join('share', PACKAGE, 'rviz'), glob('rviz/*.rviz')),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='perception_3dinn maintainers',
    maintainer_email='perception3dinn@example.com',
    description='3D object structure, pose and voxels from a camera and 2D detections.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'chair_detector = perception_3dinn.ros.node:main',
        ],
    },
)
