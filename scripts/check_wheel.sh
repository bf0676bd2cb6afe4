#!/usr/bin/env bash
# Build the wheel and the sdist, install the wheel into fresh virtual environments OUTSIDE the repository
# (dependencies from the package registry), and use it as a user would:
#   core:      skutag --version, skutag demo, skutag vision on a photo; `import vision` (and the other five
#              stage names) must fail; skutag serve says which extra it needs
#   [service]: skutag serve starts, answers /healthz, and stops
# Prints the install time and size of each. Usage: check_wheel.sh [PYTHON]
set -euo pipefail
PYTHON=${1:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/skutag-wheel.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

"$PYTHON" -m venv build-env
build-env/bin/python -m pip install --quiet --upgrade pip build
build-env/bin/python -m build --outdir dist "$REPO" >build.log 2>&1 || { tail -30 build.log; exit 1; }
WHEEL=$(ls dist/skutag-*.whl)
ls dist/skutag-*.tar.gz >/dev/null
echo "built $(basename "$WHEEL") and $(basename dist/skutag-*.tar.gz)"
# nothing but skutag at the top of the wheel
tops=$(python3 -c "import sys, zipfile; print(' '.join(sorted({n.split('/')[0] for n in zipfile.ZipFile(sys.argv[1]).namelist() if not n.split('/')[0].endswith('.dist-info')})))" "$WHEEL")
[ "$tops" = "skutag" ] || { echo "the wheel installs more than skutag at the top: $tops" >&2; exit 1; }

install() {  # install NAME SPEC: a fresh venv, the time and size it took
  local name=$1 spec=$2 started
  "$PYTHON" -m venv "$name"
  "$name/bin/python" -m pip install --quiet --upgrade pip
  started=$(date +%s)
  # torch/torchvision first, exact versions (local files on the build machines), as `make setup` does
  "$name/bin/python" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  "$name/bin/python" -m pip install --quiet "$spec"
  local site; site=$("$name/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  local heavy; heavy=$(du -smc "$site"/torch "$site"/nvidia "$site"/triton "$site"/torchvision 2>/dev/null | tail -1 | cut -f1)
  echo "install $name: $(( $(date +%s) - started )) s, $(du -sm "$name" | cut -f1) MB ($heavy MB of it torch, torchvision and CUDA libraries)"
}

export SKUTAG_HOME="$WORK/home" HF_HUB_OFFLINE=1
install core "$WHEEL"
core/bin/skutag --version
for name in vision ocr text fusion taxonomy models; do
  if core/bin/python -c "import $name" 2>/dev/null; then echo "import $name works outside the repository" >&2; exit 1; fi
done
core/bin/skutag demo >demo.txt
grep -q "example products" demo.txt || { cat demo.txt; exit 1; }
photo=$(core/bin/python -c "from importlib.resources import files; print(files('skutag.examples') / 'photos' / 'banana.jpg')")
core/bin/skutag vision "$photo" --json | head -c 300; echo
if core/bin/skutag serve --port 8765 2>serve.err; then echo "skutag serve ran without the service extra" >&2; exit 1; fi
grep -q "skutag\[service\]" serve.err || { cat serve.err; exit 1; }

install full "${WHEEL}[service]"
full/bin/skutag serve --port 8765 --db "sqlite:///$WORK/serve.db" >serve.log 2>&1 &
pid=$!
for _ in $(seq 1 120); do
  if curl -fsS http://127.0.0.1:8765/healthz >/dev/null 2>&1; then break; fi
  kill -0 "$pid" 2>/dev/null || { cat serve.log; exit 1; }
  sleep 1
done
curl -fsS http://127.0.0.1:8765/healthz; echo
kill "$pid"; wait "$pid" || true
echo "wheel check passed"
