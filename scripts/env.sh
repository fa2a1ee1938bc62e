# Source me (bash): the environment made by scripts/setup_env.sh, for a shell or a script.
#   source scripts/env.sh
_p3_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${ROS_DISTRO:-}" ] || [ -x "$_p3_root/.venv/bin/python" ]; then
  if [ -x "$_p3_root/.venv/bin/python" ]; then
    # shellcheck disable=SC1091
    . "$_p3_root/.venv/bin/activate"
    export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  fi
fi
if [ -f "$_p3_root/install/setup.bash" ]; then
  # shellcheck disable=SC1091
  . "$_p3_root/install/setup.bash"
else
  echo "perception_3dinn: no workspace built yet; run 'make setup' first" >&2
fi
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
unset _p3_root
