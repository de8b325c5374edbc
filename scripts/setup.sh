#!/usr/bin/env bash
# Set up everything the project needs, idempotently: .venv with the pinned working set, then Fashion-MNIST.
# A second run only checks (a few seconds). PYTHON=/path/to/python3.x picks the interpreter.
# Usage: scripts/setup.sh [EXTRAS]: EXTRAS from pyproject.toml, e.g. "notebook" or "test" (make test);
# without, only what training needs (make run).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}

say() { printf 'setup: %s\n' "$*" >&2; }

supported() {  # MXNet 1.9.1 needs numpy < 1.24, which exists for Python 3.8-3.11 only
  "$1" -c 'import sys, venv; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 11))' >/dev/null 2>&1
}

find_python() {
  local cand
  for cand in ${PYTHON:-} python3.11 python3.10 python3.9 python3.8 python3 \
      "$HOME"/.pyenv/versions/3.11*/bin/python "$HOME"/.pyenv/versions/3.10*/bin/python \
      "$HOME"/.pyenv/versions/3.9*/bin/python "$HOME"/.pyenv/versions/3.8*/bin/python; do
    if command -v "$cand" >/dev/null 2>&1 && supported "$cand"; then command -v "$cand"; return 0; fi
  done
  return 1
}

# 1. The virtual environment: created once; packages (re)installed when pyproject.toml, constraints.txt or the
# extras asked for change. One stamp per set of extras; "test" holds all the others, so after `make test`,
# `make run` and `make lab` only check.
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
stamp=".venv/.installed${extras:+-$extras}"
[ "$(cat .venv/.installed-test 2>/dev/null)" = "$want" ] && stamp=.venv/.installed-test
if [ ! -x .venv/bin/python ] || ! supported .venv/bin/python; then
  if ! py=$(find_python); then
    say "error: no Python 3.8-3.11 found (MXNet 1.9.1 needs numpy < 1.24, which has no wheels for newer" \
        "Pythons). Install one (e.g. 'pyenv install 3.11' or 'apt-get install python3.11-venv') or set PYTHON=/path/to/python3.11."
    exit 2
  fi
  say "creating .venv with $py ($("$py" --version 2>&1))"
  rm -rf .venv
  "$py" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # constraints.txt is the working set tested on Python 3.11; other versions resolve from pyproject's pins.
  constraints=()
  .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' && constraints=(-c constraints.txt)
  say "installing mxnet 1.9.1, numpy 1.23.5, matplotlib${extras:+ and the extras $extras} (about a minute)"
  # (setuptools warns about every editable install and pip about this machine's unused local index
  # folders: noise, hence PYTHONWARNINGS and the filter)
  if ! PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet --upgrade pip "${constraints[@]}" -e ".${extras:+[$extras]}" 2>&1 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2; then
    say "error: pip install failed (see above); fix the cause and run again"; exit 1
  fi
  echo "$want" > "$stamp"
fi

# 2. The dataset: a verified copy already somewhere? Else Debian's package, else a download.
if ! .venv/bin/python -m dropout_gluon data status >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ ! -d /usr/share/datasets/fashion-mnist ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    say "installing Debian's package dataset-fashion-mnist"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist; } \
      >/dev/null 2>&1 || say "could not install dataset-fashion-mnist with apt-get; trying a download"
  fi
  .venv/bin/python -m dropout_gluon data fetch
fi
