"""The launch file, RViz config and installed files the node needs (launch cannot run here).

launch_ros is not installable on this machine, so the launch file is checked statically: it
parses, defines generate_launch_description with documented arguments, names the executable
setup.py installs and the config/RViz files that exist, and runs no eval or subprocess.
"""

from __future__ import annotations

import ast
from pathlib import Path
import re

import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / 'launch' / 'chair_detector.launch.py'


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_launch_file_is_thin_and_documented() -> None:
    source = LAUNCH.read_text()
    tree = ast.parse(source)
    funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert funcs == ['generate_launch_description']
    assert ast.get_docstring(tree) and 'Usage' in ast.get_docstring(tree)
    assert not re.search(r'\beval\(|\bexec\(|subprocess|os\.system', source)
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {'launch.actions', 'launch.conditions', 'launch.launch_description',
                        'launch.substitutions', 'launch_ros.actions',
                        'launch_ros.parameter_descriptions', 'launch_ros.substitutions'}
    args = _calls(tree, 'DeclareLaunchArgument')
    names = {a.args[0].value for a in args}
    assert {'image_topic', 'camera_info_topic', 'detections_topic', 'config', 'backend',
            'use_sim_time', 'rviz', 'namespace'} <= names
    for a in args:
        desc = _kw(a, 'description')
        assert desc is not None, a.args[0].value
    floor = next(a for a in args if a.args[0].value == 'floor_frame')
    assert _kw(floor, 'default_value').value == 'base_footprint'
    assert "'pose.floor_frame': LaunchConfiguration('floor_frame')" in source
    backend = next(a for a in args if a.args[0].value == 'backend')
    choices = [e.value for e in _kw(backend, 'choices').elts]
    assert choices == ['onnxruntime', 'tensorrt', 'torch']


def test_launch_names_what_exists() -> None:
    tree = ast.parse(LAUNCH.read_text())
    node = _calls(tree, 'LifecycleNode')[0]
    assert _kw(node, 'package').value == 'perception_3dinn'
    exe = _kw(node, 'executable').value
    setup = (REPO / 'setup.py').read_text()
    assert f"'{exe} = perception_3dinn.ros.node:main'" in setup
    assert _kw(node, 'namespace') is not None  # required by launch_ros on Humble
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str)}
    assert 'chair_detector.yaml' in strings and (REPO / 'config' / 'chair_detector.yaml').is_file()
    assert 'chair_detector.rviz' in strings and (REPO / 'rviz' / 'chair_detector.rviz').is_file()
    # The remapped names are the node's relative input names.
    from perception_3dinn.ros import node_inputs as node_module

    for topic in (node_module.IMAGE_TOPIC, node_module.CAMERA_INFO_TOPIC,
                  node_module.DETECTIONS_TOPIC, node_module.IMAGE_TOPIC + '/compressed'):
        assert topic in strings, topic


def test_rviz_config_shows_the_node_outputs() -> None:
    doc = yaml.safe_load((REPO / 'rviz' / 'chair_detector.rviz').read_text())
    displays = doc['Visualization Manager']['Displays']
    classes = {d['Class']: d for d in displays}
    assert {'rviz_default_plugins/TF', 'rviz_default_plugins/MarkerArray',
            'rviz_default_plugins/Image'} <= set(classes)
    assert classes['rviz_default_plugins/MarkerArray']['Topic']['Value'] == \
        '/chair_detector/markers'
    assert doc['Visualization Manager']['Global Options']['Fixed Frame'] == \
        'camera_optical_frame'


def test_rviz_topics_follow_the_launch_arguments() -> None:
    """Every topic the .rviz file names is remapped for the rviz2 node: the node's outputs
    under `namespace`, the camera image to `image_topic`."""
    doc = yaml.safe_load((REPO / 'rviz' / 'chair_detector.rviz').read_text())
    topics = {d['Topic']['Value'] for d in doc['Visualization Manager']['Displays']
              if 'Topic' in d}
    tree = ast.parse(LAUNCH.read_text())
    rviz = next(c for c in _calls(tree, 'Node') if _kw(c, 'executable').value == 'rviz2')
    remaps = {}
    for pair in _kw(rviz, 'remappings').elts:
        source, target = pair.elts
        remaps[source.value] = ast.unparse(target)
    assert set(remaps) == topics
    assert remaps['/chair_detector/markers'] == \
        "[LaunchConfiguration('namespace'), '/chair_detector/markers']"
    assert remaps['/camera/image_raw'] == 'image'
    assert "image = LaunchConfiguration('image_topic')" in LAUNCH.read_text()


def test_launch_gives_the_node_the_shipped_fast_dds_profile() -> None:
    """Unless the user set one: raw images are lost with Fast DDS's default segment size."""
    node = _calls(ast.parse(LAUNCH.read_text()), 'LifecycleNode')[0]
    env = _kw(node, 'additional_env')
    assert [k.value for k in env.keys] == ['FASTDDS_DEFAULT_PROFILES_FILE']
    default = _kw(env.values[0], 'default_value')
    assert 'fastdds_large_images.xml' in ast.unparse(default)
    assert (REPO / 'config' / 'fastdds_large_images.xml').is_file()


def test_docs_parameter_table_matches_the_declarations() -> None:
    """docs/node.md's table: every declared parameter, in order, with its type, code default,
    allowed range or choices and description exactly as params.py declares them."""
    from perception_3dinn.ros.params import PARAMS

    rows = {}
    for line in (REPO / 'docs' / 'node.md').read_text().splitlines():
        m = re.match(r'\| `([^`]+)` \| (\S+) \| `(.*?)` \| (.*?) \| (.*) \|$', line)
        if m:
            rows[m.group(1)] = tuple(g.strip() for g in m.groups()[1:])
    assert list(rows) == [p.name for p in PARAMS]
    types = {bool: 'bool', int: 'int', float: 'double', str: 'string', list: 'string[]'}
    for p in PARAMS:
        kind, default, allowed, description = rows[p.name]
        assert kind == ('double[]' if p.is_double_array else types[type(p.default)]), p.name
        want = str(p.default).lower() if isinstance(p.default, bool) else repr(p.default)
        assert default == want, p.name
        if p.choices:
            assert allowed == ', '.join(p.choices), p.name
        elif p.low is not None or p.high is not None:
            assert allowed == f'[{p.low}, {p.high}]', p.name
        else:
            assert allowed == '', p.name
        assert description == p.description, p.name


def test_furniture_launch_serves_every_installed_category() -> None:
    path = REPO / 'launch' / 'furniture_detector.launch.py'
    tree = ast.parse(path.read_text())
    assert 'Usage' in ast.get_docstring(tree)
    include = _calls(tree, 'IncludeLaunchDescription')
    assert len(include) == 1
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str)}
    assert 'chair_detector.launch.py' in strings and LAUNCH.is_file()
    setp = _calls(tree, 'SetParameter')
    assert [(_kw(c, 'name').value, [e.value for e in _kw(c, 'value').elts]) for c in setp] == [
        ('categories', ['all'])]
    from perception_3dinn.ros.params import SPECS

    assert 'categories' in SPECS and SPECS['categories'].default == []
