#!/usr/bin/env bash
# The GPU check in one command (docs/gpu.md): on a CUDA machine, prove ort-cuda on the GPU and measure
# it beside the raw engine, PyTorch and ort-cpu; everything lands under $OUT (or out/gpu-check).
#
#   bash benchmarks/gpu/check.sh              on your own GPU machine, after pip install onnxruntime-gpu
#   SDK_CARRY_SHA256=... bash benchmarks/gpu/check.sh   where carry-wheel.sh's parts were appended to
#                                             /tmp/sdk-carry/wheels.tar (a machine with no package index)
#
# Without a GPU it validates the plan and ends in seconds, saying so (a test in `make test` runs that).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out=${OUT:-$root/out/gpu-check}
mkdir -p "$out"
py=${PYTHON:-python3}
log="$out/check.log"
: >"$log"
say() { echo "check.sh: $*" | tee -a "$log"; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  say "no NVIDIA GPU here (nvidia-smi finds none); validating the plan only"
  exec "$py" benchmarks/gpu/check.py --out "$out" --plan-only "$@"
fi
nvidia-smi -L | tee -a "$log"

# 1. onnxruntime-gpu: the carried wheels, if their parts were appended here, into a folder first on
#    PYTHONPATH (the image's CPU onnxruntime stays installed, shadowed); else whatever is installed.
site=${SDK_CHECK_SITE:-/tmp/sdk-site}
carry=${SDK_CARRY_DIR:-/tmp/sdk-carry}
carried=$carry/wheels.tar
if [ -n "${SDK_CARRY_SHA256:-}" ] && [ ! -f "$carried" ]; then
  say "no $carried: the calls that append the parts ran on another machine (it went back while idle?); run the whole sequence again"
  exit 1
fi
if [ -f "$carried" ]; then
  got=$(sha256sum "$carried" | cut -d' ' -f1)
  if [ -n "${SDK_CARRY_SHA256:-}" ] && [ "$got" != "$SDK_CARRY_SHA256" ]; then
    say "the joined parts' sha256 is $got, not $SDK_CARRY_SHA256: a part is missing or landed on another machine (it went back while idle?); run the whole sequence of calls again"
    exit 1
  fi
  rm -rf "$carry/wheels" "$site" && mkdir -p "$carry/wheels" "$site"
  tar -xf "$carried" -C "$carry/wheels"
  say "installing $(cd "$carry/wheels" && ls *.whl | tr '\n' ' ')into $site (sha256 $got)"
  if ! "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$carry"/wheels/*.whl >>"$log" 2>&1; then
    say "pip could not install the carried wheels (see $log)"
    exit 1
  fi
fi
# 2. The SDK from this tree, unless this Python already imports it from here (a developer's venv).
if ! "$py" -c "import sys, sdk, deploy_sdk_backends; sys.exit(not sdk.__file__.startswith('$root/'))" >/dev/null 2>&1; then
  mkdir -p "$site"
  say "installing the SDK from $root into $site (--no-deps: the machine's own numpy, onnx, torch are used)"
  if ! "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" "$root" >>"$log" 2>&1; then
    # The machine's setuptools may be too old for pyproject.toml (and none can be fetched there): lay
    # out what the SDK needs at run time by hand, its entry points read from pyproject.toml, the code
    # from this tree.
    say "pip could not build the SDK here (see $log); registering it from the tree instead"
    "$py" - "$root" "$site" <<'EOF_PY' || exit 1
import pathlib, sys, tomllib
root, site = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
info = site / f"deploy_sdk-{project['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
groups = project["entry-points"]
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) for group, points in groups.items()))
link = site / "deploy_sdk_backends"
if not link.exists():
    link.symlink_to(root / "backends")
EOF_PY
  fi
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
# 3. CUDA 13, cuDNN and cuBLAS come from the nvidia-* wheels beside PyTorch, which sit in another
#    site-packages than a --target install of onnxruntime-gpu: preload_dlls() looks beside onnxruntime,
#    then in the loader's path, so the loader is told where they are.
libs=$("$py" - <<'EOF'
import glob, os, sys
found = []
for entry in sys.path:
    for lib in sorted(glob.glob(os.path.join(entry, "nvidia", "*", "lib"))):
        if lib not in found:
            found.append(lib)
print(":".join(found))
EOF
)
if [ -n "$libs" ]; then
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "CUDA libraries from: $libs"
fi
"$py" benchmarks/gpu/check.py --out "$out" "$@"
status=$?
say "exit $status; results in $out: $(cd "$out" && ls | tr '\n' ' ')"
exit $status
