# Sourced by the scripts: create (once) and activate a virtual environment, install the package into it.
#   usage: source scripts/_venv.sh VENV_DIR [EXTRAS]
set -euo pipefail
venv="$1"; extras="${2:-}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
stamp="$venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)$extras"
if [ ! -f "$stamp" ]; then
  echo "installing crossvideomae${extras:+[$extras]} into $venv (the first time takes a few minutes: PyTorch)"
  python -m pip install -q -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
