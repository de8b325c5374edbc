#!/usr/bin/env bash
# Set up everything the project needs, idempotently: .venv with the pinned working set, then Fashion-MNIST.
# A second run only checks (a few seconds). PYTHON=/path/to/python3.x picks the interpreter; VENV=folder
# another environment than .venv (CI builds one per Python).
# Usage: scripts/setup.sh [EXTRAS]: EXTRAS from pyproject.toml, e.g. "notebook" or "test" (make test);
# without, only what training needs (make run).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
venv=${VENV:-.venv}

say() { printf 'setup: %s\n' "$*" >&2; }

version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }

supported() {  # MXNet 1.9.1 runs on Python 3.8-3.13 (on 3.12 and 3.13 with a newer numpy: dropout_gluon/compat.py)
  "$1" -c 'import sys, venv; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 13))' >/dev/null 2>&1
}

# Which Python, among those present: 3.11 first (the reference working set: the golden digits were made there,
# and d2l installs with its own pins), then the maintained newer ones, 3.12 and 3.13 (MXNet loads there once
# numpy's removed names are put back), then 3.10, 3.9 and 3.8, past their end of life.
find_python() {
  local cand
  for cand in python3.11 python3.12 python3.13 python3.10 python3.9 python3.8 python3 \
      "$HOME"/.pyenv/versions/3.11*/bin/python "$HOME"/.pyenv/versions/3.12*/bin/python \
      "$HOME"/.pyenv/versions/3.13*/bin/python "$HOME"/.pyenv/versions/3.10*/bin/python \
      "$HOME"/.pyenv/versions/3.9*/bin/python "$HOME"/.pyenv/versions/3.8*/bin/python; do
    if command -v "$cand" >/dev/null 2>&1 && supported "$cand"; then command -v "$cand"; return 0; fi
  done
  return 1
}

remove_venv() {  # only a virtual environment: VENV= may name any folder
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
    say "error: $venv is not a virtual environment (it has no pyvenv.cfg), so it is left alone: set VENV= to another folder"
    exit 2
  fi
  rm -rf "$venv"
}

INSTALL_ONE="install Python 3.11, 3.12 or 3.13 (e.g. 'apt-get install python3.12-venv' or 'pyenv install 3.12') or set PYTHON=/path/to/python3.12"

# 1. The virtual environment: created once (again if PYTHON= names another version); packages (re)installed when
# pyproject.toml, the constraints or the extras asked for change. One stamp per set of extras; "test" holds all
# the others, so after `make test`, `make run` and `make lab` only check.
if [ -n "${PYTHON:-}" ] && ! supported "$PYTHON"; then
  found=$(version_of "$PYTHON" || true)
  say "error: PYTHON=$PYTHON is ${found:+Python $found, }not a Python 3.8-3.13, the ones MXNet 1.9.1 runs on: $INSTALL_ONE"
  exit 2
fi
if [ -x "$venv/bin/python" ] && { ! supported "$venv/bin/python" ||
    { [ -n "${PYTHON:-}" ] && [ "$(version_of "$venv/bin/python")" != "$(version_of "$PYTHON")" ]; }; }; then
  say "$venv is Python $(version_of "$venv/bin/python" || echo "of another kind"): making it again"
  remove_venv
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! py=${PYTHON:-$(find_python)}; then
    say "error: no Python 3.8-3.13 found, the ones MXNet 1.9.1 (its last release) runs on: $INSTALL_ONE"
    exit 2
  fi
  say "creating $venv with $py ($("$py" --version 2>&1))"
  remove_venv
  "$py" -m venv "$venv"
fi
version=$(version_of "$venv/bin/python")
want=$(cat pyproject.toml constraints/*.txt | sha256sum | cut -d' ' -f1)
stamp="$venv/.installed${extras:+-$extras}"
[ "$(cat "$venv/.installed-test" 2>/dev/null)" = "$want" ] && stamp="$venv/.installed-test"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # The working set tested on this Python (constraints/py3.X.txt); 3.8-3.10 resolve from pyproject's pins.
  constraints=()
  [ -f "constraints/py$version.txt" ] && constraints=(-c "constraints/py$version.txt")
  say "installing mxnet 1.9.1, numpy, matplotlib${extras:+ and the extras $extras} on Python $version (about a minute)"
  # (setuptools warns about every editable install and pip about this machine's unused local index
  # folders, and from 3.12 on about MXNet's numpy < 2, which is the point: noise, hence PYTHONWARNINGS and the filter)
  pip_install() {
    if ! PYTHONWARNINGS=ignore "$venv/bin/python" -m pip install --quiet "$@" 2>&1 \
        | { grep -v -e "is ignored: it is neither a file nor a directory" -e "mxnet 1.9.1 requires numpy<2" \
              -e "resolver does not currently take into account all the packages" || true; } >&2; then
      say "error: pip install failed (see above); fix the cause and run again"; exit 1
    fi
  }
  pip_install --upgrade pip
  case "$version" in 3.1[23])  # MXNet's metadata asks for numpy < 2: from 3.12 on it goes in without its
    # dependencies, after numpy (pyproject.toml says why, and names requests, the one it imports)
    pip_install "${constraints[@]}" numpy
    pip_install --no-deps mxnet==1.9.1 ;;
  esac
  pip_install "${constraints[@]}" -e ".${extras:+[$extras]}"
  # d2l 1.0.3 pins numpy 1.23.5, pandas 2.0.3, scipy 1.10.1 and matplotlib 3.7.2, none built for 3.12+: there
  # it goes in without them (what it imports, pandas, IPython, matplotlib and requests, the extra brings).
  case "$version,$extras" in 3.1[23],notebook|3.1[23],test) pip_install --no-deps d2l==1.0.3 ;; esac
  echo "$want" > "$stamp"
fi

# 2. The dataset: a verified copy already somewhere? Else Debian's package, else a download.
if ! "$venv/bin/python" -m dropout_gluon data status >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ ! -d /usr/share/datasets/fashion-mnist ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    say "installing Debian's package dataset-fashion-mnist"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist; } \
      >/dev/null 2>&1 || say "could not install dataset-fashion-mnist with apt-get; trying a download"
  fi
  "$venv/bin/python" -m dropout_gluon data fetch
fi

# 3. With the extra test: a browser for tests/test_lab.py, Debian's Chromium (playwright drives it: no download).
if [ "$extras" = test ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  say "installing Debian's package chromium, the browser of the notebook's test in JupyterLab"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || say "could not install chromium with apt-get: tests/test_lab.py will skip (fail under CI)"
fi
