#!/usr/bin/env bash
# Install what the tests need and run the whole suite: Debian's PoCL (an OpenCL device on
# the CPU, for the co-execution runtime) and adb (for the phone harness) when run as root
# with apt-get, then the package with every extra, then pytest. Skipped tests are named at
# the end ("UNTESTED: ..."); with OPLAT_REQUIRE_ALL=1 (as CI runs it) they fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg -s pocl-opencl-icd ocl-icd-libopencl1 adb >/dev/null 2>&1; then
    apt-get update -qq || true
    apt-get install -y -qq pocl-opencl-icd ocl-icd-libopencl1 adb >/dev/null \
      || echo "warning: apt-get could not install pocl-opencl-icd and adb: their tests will be named as untested" >&2
  fi
elif ! command -v adb >/dev/null 2>&1 || ! ls /etc/OpenCL/vendors/*.icd >/dev/null 2>&1; then
  echo "warning: not root: install pocl-opencl-icd and adb (Debian) to test the OpenCL runtime and the phone harness" >&2
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test]"
python3 -m pytest -q "$@"
