#!/usr/bin/env bash
# Whether this machine can run CUDA programs built for CUDA MAJOR or later: an NVIDIA
# driver whose libcuda the dynamic loader finds, that supports that CUDA version, with
# at least one GPU. Asks the driver library itself (cuDriverGetVersion, cuInit,
# cuDeviceGetCount, through Python's ctypes), not nvidia-smi or the CUDA toolkit: that
# library is what CUDA programs load (mlx-cuda-13's libmlx names libcuda.so.1), it is
# there in containers that mount the driver without its tools, and the toolkit is not
# needed to run them.
#
#   scripts/cuda_driver.sh MAJOR [LIBRARY]
#
# LIBRARY is the driver library to ask (default libcuda.so.1, found as the loader finds
# it). Exit status: 0 usable, and the driver's CUDA version (e.g. 13.0) on stdout; 2 not
# usable, one line on stderr saying what is missing.
set -euo pipefail
major=${1:?usage: $0 MAJOR [LIBRARY]}
library=${2:-libcuda.so.1}
"${PYTHON:-python3}" - "$major" "$library" <<'PYEOF'
import ctypes, sys

major, library = int(sys.argv[1]), sys.argv[2]
def needs(what):
    print(f"needs {what}", file=sys.stderr)
    sys.exit(2)
try:
    cuda = ctypes.CDLL(library)
except OSError:
    needs(f"an NVIDIA driver supporting CUDA {major} (no {library} the loader finds)")
version = ctypes.c_int(0)
if cuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
    needs(f"an NVIDIA driver supporting CUDA {major} ({library} gives no CUDA version)")
found = f"{version.value // 1000}.{version.value % 1000 // 10}"
if version.value < major * 1000:
    needs(f"an NVIDIA driver supporting CUDA {major} (this one supports CUDA {found})")
count = ctypes.c_int(0)
status = cuda.cuInit(0)
if status != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
    needs(f"an NVIDIA GPU (the driver, CUDA {found}, finds none: cuInit returned {status})")
print(found)
PYEOF
