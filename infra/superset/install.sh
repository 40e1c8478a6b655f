#!/usr/bin/env bash
# Installs Apache Superset (requirements.txt, pinned by constraints.txt) into its own virtualenv
# outside the repo, cached: the directory's name carries a hash of both files and the Python
# version, so a changed pin builds a new one and an unchanged one is reused as it is.
# Prints the virtualenv's path as its last line. Needs Python 3.10–3.12 (Superset 6.1);
# SUPERSET_PYTHON picks the interpreter.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${SUPERSET_PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
  done
fi
[ -n "$python" ] || { echo "no Python 3 found for Superset (set SUPERSET_PYTHON)" >&2; exit 1; }
version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$version" in
  3.10|3.11|3.12) ;;
  *) echo "Superset 6.1 needs Python 3.10-3.12, $python is $version (set SUPERSET_PYTHON)" >&2; exit 1 ;;
esac
key="$(cat "$here/requirements.txt" "$here/constraints.txt" | sha1sum | cut -c1-12)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/fangxian/superset-venv-py$version-$key"
if [ ! -f "$venv/.installed" ]; then
  echo "installing Superset into $venv (once; several minutes on a fresh machine)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -r "$here/requirements.txt" -c "$here/constraints.txt" >&2
  touch "$venv/.installed"
fi
echo "$venv"
