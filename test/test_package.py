"""The package as colcon installs it: manifest, setup.py, installed files, entry points, lint."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

REPO = Path(__file__).resolve().parents[1]


def _setup_kwargs() -> dict:
    """The keyword arguments of setup() in setup.py, read without running it."""
    tree = ast.parse((REPO / 'setup.py').read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', '') == 'setup')
    return {kw.arg: kw.value for kw in call.keywords}


def _console_scripts() -> list[str]:
    entry = ast.literal_eval(_setup_kwargs()['entry_points'])
    return entry['console_scripts']


def test_ruff_clean() -> None:
    ruff = shutil.which('ruff') or str(Path(sys.executable).with_name('ruff'))
    result = subprocess.run([ruff, 'check', str(REPO)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_xml_matches_setup_py() -> None:
    root = ET.parse(REPO / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'perception_3dinn'
    assert root.findtext('export/build_type') == 'ament_python'
    version = ast.literal_eval(_setup_kwargs()['version'])
    assert root.findtext('version') == version
    import perception_3dinn
    assert perception_3dinn.__version__ == version
    msgs = ET.parse(REPO / 'perception_3dinn_msgs' / 'package.xml').getroot()
    assert msgs.findtext('member_of_group') == 'rosidl_interface_packages'
    assert msgs.findtext('export/build_type') == 'ament_cmake'


def test_message_definitions_are_all_generated() -> None:
    cmake = (REPO / 'perception_3dinn_msgs' / 'CMakeLists.txt').read_text()
    msg_files = sorted(p.name for p in (REPO / 'perception_3dinn_msgs' / 'msg').glob('*.msg'))
    assert msg_files
    for name in msg_files:
        assert f'msg/{name}' in cmake, f'{name} is not in rosidl_generate_interfaces'
        module = importlib.import_module('perception_3dinn_msgs.msg')
        assert hasattr(module, name[:-4]), f'{name} was not generated'


def test_runtime_dependencies_resolve() -> None:
    """Every ROS exec_depend is importable here, except the launch tools PyPI lacks."""
    root = ET.parse(REPO / 'package.xml').getroot()
    missing = []
    for dep in root.findall('exec_depend'):
        name = dep.text
        if name.startswith('python3-') or name in ('launch', 'launch_ros'):
            continue
        module = name if name == 'rclpy' else f'{name}.msg'
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(name)
    assert not missing, f'exec_depend not importable: {missing}'


def test_installed_share_files(install_prefix: Path) -> None:
    share = install_prefix / 'perception_3dinn' / 'share' / 'perception_3dinn'
    assert (share / 'package.xml').is_file()
    marker = (install_prefix / 'perception_3dinn' / 'share' / 'ament_index' /
              'resource_index' / 'packages' / 'perception_3dinn')
    assert marker.exists()
    for folder, pattern in (('launch', '*.launch.py'), ('config', '*.yaml'), ('rviz', '*.rviz')):
        sources = sorted(p.name for p in (REPO / folder).glob(pattern))
        installed = sorted(p.name for p in (share / folder).glob(pattern))
        assert sources == installed, f'{folder}: source {sources} vs installed {installed}'


@pytest.mark.parametrize('spec', _console_scripts())
def test_console_scripts_installed_and_importable(spec: str, install_prefix: Path) -> None:
    name, target = (s.strip() for s in spec.split('='))
    module_name, func = target.split(':')
    module = importlib.import_module(module_name)
    assert callable(getattr(module, func))
    script = install_prefix / 'perception_3dinn' / 'lib' / 'perception_3dinn' / name
    assert script.is_file(), f'{script} not installed (setup.cfg install_scripts?)'
