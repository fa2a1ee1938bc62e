# Sourced by scripts/setup_env.sh and scripts/env.sh (bash): which ROS 2 environment to use.
#
# The folder suffix ("flavour") of the environment:
#   <distro>-system  a sourced ROS 2 install (ROS_DISTRO set, rclpy importable, not from our
#                    wheels): it always wins, as a ROS user expects;
#   jazzy | kilted   PyPI's ROS 2 wheels of ROS_WHEELS (default jazzy).
# Each flavour has .venv-<f>/, build/<f>/, install-<f>/ and log/<f>/ of its own.

P3_WHEEL_DISTROS='jazzy kilted'

# p3_flavour PYTHON: print the flavour; an unknown ROS_WHEELS prints an error, returns 2.
p3_flavour() {
  local py="$1" want="${ROS_WHEELS:-jazzy}"
  if [ -n "${ROS_DISTRO:-}" ] && "$py" -c '
import importlib.util as u, sys
sys.exit(0 if u.find_spec("rclpy") and not u.find_spec("ros_wheels_bootstrapper") else 1)
' >/dev/null 2>&1; then
    echo "$ROS_DISTRO-system"
    return 0
  fi
  case " $P3_WHEEL_DISTROS " in
    *" $want "*) echo "$want" ;;
    *)
      echo "perception_3dinn: ROS_WHEELS='$want' is not a distribution we set up from" \
        "PyPI wheels; use ROS_WHEELS=jazzy (the default, LTS) or ROS_WHEELS=kilted" >&2
      return 2
      ;;
  esac
}

# _p3_strip VAR ROOT: drop VAR's entries inside ROOT's per-distribution folders.
_p3_strip() {
  local var="$1" root="$2" out='' part
  local -a parts
  IFS=: read -ra parts <<< "${!var:-}"
  for part in "${parts[@]}"; do
    case "$part" in
      "$root"/.venv | "$root"/.venv/* | "$root"/.venv-* | "$root"/install | "$root"/install/* \
        | "$root"/install-*) ;;
      *) out="${out:+$out:}$part" ;;
    esac
  done
  if [ -n "$out" ]; then export "$var=$out"; else unset "$var"; fi
}

# p3_leave_env ROOT: undo what scripts/env.sh of ROOT (and of the checkout that last sourced
# it) put into this shell, so that one distribution's paths never leak into another's.
p3_leave_env() {
  local root var
  for root in "$1" ${P3_ENV_ROOT:+"$P3_ENV_ROOT"}; do
    for var in PATH LD_LIBRARY_PATH PYTHONPATH AMENT_PREFIX_PATH CMAKE_PREFIX_PATH \
      COLCON_PREFIX_PATH PKG_CONFIG_PATH; do
      _p3_strip "$var" "$root"
    done
    case "${VIRTUAL_ENV:-}" in "$root"/.venv*) unset VIRTUAL_ENV ;; esac
  done
  if [ -n "${P3_SET_ROS_DISTRO:-}" ]; then unset ROS_DISTRO; fi
  unset P3_SET_ROS_DISTRO P3_ENV_ROOT P3_ENV_FLAVOUR _ROS_WHEELS_BOOTSTRAP_COMPLETE
  hash -r
}
