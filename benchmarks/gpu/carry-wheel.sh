#!/usr/bin/env bash
# Prepare the wheels the GPU check needs on a machine that cannot reach a package index, cut into
# parts that each fit one call of this workplace's device tool, and print those calls.
#
#   benchmarks/gpu/carry-wheel.sh                 download, cut into .carry/, print the calls
#   benchmarks/gpu/carry-wheel.sh --from DIR      use the wheels already in DIR (no network)
#   options: --part-mib N (default 60)  --python 3.12 (the device's Python)  --ort VERSION (1.31.1)
#
# Why: the H200 machine's Python holds the CPU build of onnxruntime (1.30) and PyTorch's CUDA 13,
# cuDNN and cuBLAS libraries, but no onnxruntime-gpu, and it reaches no index. onnxruntime-gpu 1.31
# on PyPI is the CUDA 13 build (checked below from the wheel's own build info), about 255 MB: more
# than one call may carry (64 MiB), so it travels in parts that are appended to one file there.
# PyAV (for benchmarks/video.py) and platformdirs (an SDK dependency the image lacks) travel with it.
# A user's own GPU machine needs none of this: `pip install onnxruntime-gpu` (docs/gpu.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${SDK_CARRY_ROOT:-$(git -C "$here" rev-parse --show-toplevel)}
from="" mib=60 python=3.12 ort=1.31.1
while [ $# -gt 0 ]; do
  case $1 in
    --from) from=$2; shift 2 ;;
    --part-mib) mib=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --ort) ort=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "carry-wheel.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# The tool that cuts parts lives in the team's shared folder, beside the checkout or above it.
split_parts=${SPLIT_PARTS:-}
dir=$(git -C "$here" rev-parse --show-toplevel)
while [ -z "$split_parts" ] && [ "$dir" != "/" ]; do
  for candidate in "$dir/shared/tools/split-parts" "$dir/../shared/tools/split-parts"; do
    if [ -x "$candidate" ]; then split_parts=$candidate; break; fi
  done
  dir=$(dirname "$dir")
done
[ -n "$split_parts" ] || { echo "carry-wheel.sh: shared/tools/split-parts not found above $here; set SPLIT_PARTS" >&2; exit 1; }

# Neither the parts nor the download may travel as untracked files (or be committed): ignore them first.
exclude=$(git -C "$root" rev-parse --git-path info/exclude)
case $exclude in /*) ;; *) exclude="$root/$exclude" ;; esac
mkdir -p "$(dirname "$exclude")"
for pattern in /.carry/ /.carry-build/; do
  grep -qxF "$pattern" "$exclude" 2>/dev/null || echo "$pattern" >>"$exclude"
done

# A call carries the working tree too (tracked and untracked files that git does not ignore), 64 MiB
# in all: a part leaves room for it.
tree=$(git -C "$root" ls-files -z -co --exclude-standard | (cd "$root" && xargs -0 -r du -cb 2>/dev/null) | tail -1 | cut -f1)
room=$(( (64 * 1048576 - ${tree:-0} - 524288) / 1048576 ))
if [ "$mib" -gt "$room" ]; then
  echo "carry-wheel.sh: the working tree is $(( ${tree:-0} / 1024 )) KiB: parts of $room MiB instead of $mib" >&2
  mib=$room
fi

work="$root/.carry-build"
rm -rf "$work"; mkdir -p "$work/wheels"
if [ -n "$from" ]; then
  ls "$from"/*.whl >/dev/null 2>&1 || { echo "carry-wheel.sh: no wheels (*.whl) in $from" >&2; exit 1; }
  cp "$from"/*.whl "$work/wheels/"
else
  # Exact pins: the parts' sha256 is printed into the calls, so the set must be the one tested.
  tag=${python/./}
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python" --implementation cp \
    --abi "cp$tag" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    -d "$work/wheels" "onnxruntime-gpu==$ort" "av==18.1.0" "platformdirs==4.14.9"
fi

ort_wheel=$(ls "$work"/wheels/onnxruntime_gpu-*.whl 2>/dev/null | head -1)
[ -n "$ort_wheel" ] || { echo "carry-wheel.sh: no onnxruntime_gpu-*.whl among the wheels" >&2; exit 1; }
# The wheel says which CUDA it was built for; the machine's libraries are CUDA 13.
cuda=$(unzip -p "$ort_wheel" 'onnxruntime/capi/build_and_package_info.py' | sed -n "s/^cuda_version = ['\"]\([^'\"]*\)['\"].*/\1/p")
case $cuda in
  13*) ;;
  *) echo "carry-wheel.sh: $(basename "$ort_wheel") is built for CUDA '${cuda:-?}', not 13: pick another version (--ort)" >&2; exit 1 ;;
esac

# Reproducible: the same wheels give the same tar, so the sha256 in the printed calls names the wheels.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$work/wheels.tar" -C "$work/wheels" .
"$split_parts" "$work/wheels.tar" "$root/.carry" "$mib" >&2
sha=$(sha256sum "$work/wheels.tar" | cut -d' ' -f1)
parts=$(ls -d "$root"/.carry/p* | wc -l)
wheels=$(cd "$work/wheels" && ls *.whl | tr '\n' ' ')
rm -rf "$work"


echo "# wheels.tar (sha256 $sha, $parts parts of at most $mib MiB): ${wheels}- onnxruntime-gpu built for CUDA $cuda"
echo "# Call the device tool's run once per line, back to back (the machine goes back after 30 s idle and"
echo "# /tmp with it): each call appends its part to /tmp/sdk-carry/wheels.tar; the last runs the check."
last=$((parts - 1))
for i in $(seq 0 "$last"); do
  append="cat .carry/p$i/part >> /tmp/sdk-carry/wheels.tar"
  # The first call starts the machine: the H200 the goals are written for; the rest go to the warm one.
  kind=""
  if [ "$i" -eq 0 ]; then append="rm -rf /tmp/sdk-carry && mkdir -p /tmp/sdk-carry && $append"; kind='kind="nvidia-h200", '; fi
  if [ "$i" -eq "$last" ]; then
    echo "run(${kind}carry=[\".carry/p$i\"], timeout_s=480, command=\"$append && SDK_CARRY_SHA256=$sha bash benchmarks/gpu/check.sh\")"
  else
    echo "run(${kind}carry=[\".carry/p$i\"], timeout_s=60, command=\"$append && ls -l /tmp/sdk-carry\")"
  fi
done
