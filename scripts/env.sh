# Source me (bash): the environment made by scripts/setup_env.sh, for a shell or a script.
#   source scripts/env.sh                      # ROS 2 Jazzy wheels (or a sourced ROS 2 install)
#   ROS_WHEELS=kilted source scripts/env.sh    # ROS 2 Kilted wheels
# The distribution is chosen as `make setup` chooses it (scripts/distro.sh); sourcing again,
# with another ROS_WHEELS, first removes the previous distribution's paths.
_p3_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/distro.sh
. "$_p3_root/scripts/distro.sh"
if [ -n "${VIRTUAL_ENV:-}" ] && [ "$(type -t deactivate)" = function ]; then
  case "$VIRTUAL_ENV" in
    "$_p3_root"/.venv* | "${P3_ENV_ROOT:-/nonexistent}"/.venv*) deactivate ;;
  esac
fi
p3_leave_env "$_p3_root"
# Returns 2 (a message printed) for an unknown ROS_WHEELS.
_p3_env() {
  _p3_flavour="$(p3_flavour "${PYTHON:-python3}")" || return 2
  if [ -x "$_p3_root/.venv-$_p3_flavour/bin/python" ]; then
    # shellcheck disable=SC1091
    . "$_p3_root/.venv-$_p3_flavour/bin/activate"
    case "$_p3_flavour" in
      *-system) ;;
      *)
        # The wheels install an ament prefix into the venv itself; a ROS install's setup.bash
        # would also say which distribution this is.
        export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
        export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
        export ROS_DISTRO="$_p3_flavour" P3_SET_ROS_DISTRO=1
        ;;
    esac
  fi
  case "$_p3_flavour" in
    *-system) _p3_setup='make setup' ;;
    *) _p3_setup="ROS_WHEELS=$_p3_flavour make setup" ;;
  esac
  if [ -f "$_p3_root/install-$_p3_flavour/setup.bash" ]; then
    # colcon's setup.bash reads unset variables: not under a caller's `set -u`.
    case $- in *u*) set +u; _p3_nounset=1 ;; *) _p3_nounset='' ;; esac
    # shellcheck disable=SC1091
    . "$_p3_root/install-$_p3_flavour/setup.bash"
    if [ -n "$_p3_nounset" ]; then set -u; fi
    export P3_ENV_ROOT="$_p3_root" P3_ENV_FLAVOUR="$_p3_flavour"
    if [ "$(readlink "$_p3_root/install" 2>/dev/null)" != "install-$_p3_flavour" ]; then
      echo "perception_3dinn: this shell has $_p3_flavour, but install/ points at" \
        "$(readlink "$_p3_root/install" 2>/dev/null || echo nothing); paths under install/" \
        "belong to the last 'make setup' (run '$_p3_setup' to point it here)" >&2
    fi
  else
    echo "perception_3dinn: no $_p3_flavour workspace built yet; run '$_p3_setup' first" >&2
  fi
}
if _p3_env; then _p3_rc=0; else _p3_rc=2; fi
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
unset -f _p3_env
unset _p3_root _p3_flavour _p3_setup _p3_nounset
[ "$_p3_rc" = 0 ] && unset _p3_rc || return 2
