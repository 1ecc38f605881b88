# Shared by run.sh, test.sh and install-tools.sh (sourced, not run).

# phase "what" "about N minutes": announce a phase and how long it usually takes, and
# say how long the previous one really took.
_phase_start=""
_phase_name=""
phase() {
  phase_done
  _phase_name="$1"
  _phase_start=$SECONDS
  echo "==> $1${2:+ ($2)}" >&2
}
phase_done() {
  if [ -n "$_phase_name" ]; then
    echo "    done in $((SECONDS - _phase_start)) s" >&2
    _phase_name=""
  fi
}

# compile_package: the package's bytecode, as pip writes it for an installed wheel; an
# editable install otherwise compiles every module on every run where
# PYTHONDONTWRITEBYTECODE is set (a large part of a short command's start-up). Only changed
# modules are compiled again.
compile_package() {
  .venv/bin/python -m compileall -q sloexporter >/dev/null
}

# venv_python: the interpreter .venv is made with. SLOEXPORTER_PYTHON when set; else the
# distribution's python3, the one the image is built on, when it is 3.11+ with venv; else
# python3 on PATH. A distribution's build is optimised (PGO and LTO) where a self-built one
# (pyenv's default) is not: on the same machine the short commands start 25 % slower.
python_ok() {  # PY is Python 3.11+ with venv and ensurepip
  "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}
venv_python() {
  local py
  for py in ${SLOEXPORTER_PYTHON:-/usr/bin/python3 python3}; do
    if python_ok "$py"; then
      "$py" -c 'import os, sys; print(os.path.realpath(sys.executable))'
      return 0
    fi
  done
  return 1
}
# python_needs_apt: the distribution's python3 is 3.11+ but has no venv (Debian's package
# python3-venv), or no usable Python is found at all; on a machine with apt
python_needs_apt() {
  command -v apt-get >/dev/null || return 1
  if /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null
  else
    ! venv_python >/dev/null
  fi
}
# venv_made_with PY: .venv exists and was made with PY (a real path, as venv_python prints)
venv_made_with() {
  [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c \
    'import os, sys; print(os.path.realpath(sys._base_executable))' 2>/dev/null)" = "$1" ]
}
venv_stamp() {  # what the stamp holds when .venv matches this checkout and interpreter
  local py="${1:-$(venv_python)}"
  echo "$(sha256sum <pyproject.toml | cut -d' ' -f1) $py $("$py" -V 2>&1)"
}
# ensure_venv EXTRAS: a virtualenv in .venv with the package installed (editable) with
# EXTRAS ("" or "[test]"). Skipped when pyproject.toml has not changed since the last
# install of those extras: a stamp in .venv records its hash and the interpreter.
ensure_venv() {
  local extras="$1"
  local stamp=".venv/.sloexporter-installed${extras:+-test}"
  local want py
  if ! py="$(venv_python)"; then
    echo "error: no Python 3.11+ with venv and ensurepip (set SLOEXPORTER_PYTHON)" >&2
    exit 1
  fi
  want="$(venv_stamp "$py")"
  if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
      && .venv/bin/python -c 'import sloexporter' 2>/dev/null; then
    echo "    .venv is up to date (pyproject.toml unchanged): nothing to install" >&2
    compile_package
    return 0
  fi
  # a .venv made with another interpreter is made anew
  venv_made_with "$py" || "$py" -m venv --clear .venv
  # pip's output (build warnings) is kept in a log and shown only when the install fails
  local log=".venv/pip-install.log"
  if ! .venv/bin/pip install -q --disable-pip-version-check -e ".${extras}" >"$log" 2>&1 \
      || ! .venv/bin/python -c 'import sloexporter' 2>>"$log"; then
    cat "$log" >&2
    echo "error: installing the package into .venv failed (log above, and in $log)" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
  compile_package
  # a test install also satisfies the plain one
  [ -z "$extras" ] || echo "$want" >".venv/.sloexporter-installed"
}
