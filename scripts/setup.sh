#!/usr/bin/env bash
# Installs what muongpt needs to build and test, if it is missing (Debian and
# Ubuntu packages). Safe to run any number of times: it installs nothing when
# everything is present.
#
#   scripts/setup.sh            build + test dependencies
#
# Needed: a C++20 compiler, CMake >= 3.25, Ninja, pkg-config, nlohmann-json,
# CLI11, Catch2 (v2 or v3), OpenMPI, PCRE2 (tokenizer encoder), Python 3.
# Optional and detected at build time: the CUDA toolkit (GPU backend).
set -euo pipefail

packages=(build-essential cmake ninja-build pkg-config nlohmann-json3-dev libcli11-dev catch2
          libopenmpi-dev openmpi-bin libpcre2-dev python3)

have_tool() { command -v "$1" >/dev/null 2>&1; }

# Already satisfied? Headers and tools are what matter, whatever installed them
# (the GPU machine, for one, has them without these exact package names).
satisfied() {
  have_tool cmake && have_tool ninja && have_tool c++ && have_tool pkg-config && have_tool mpirun && have_tool python3 \
    && { [ -f /usr/include/nlohmann/json.hpp ] || [ -f /usr/local/include/nlohmann/json.hpp ]; } \
    && { [ -f /usr/include/CLI/CLI.hpp ] || [ -f /usr/local/include/CLI/CLI.hpp ]; } \
    && { [ -d /usr/include/catch2 ] || [ -d /usr/local/include/catch2 ]; } \
    && pkg-config --exists libpcre2-8
}

if satisfied; then
  echo "setup: all dependencies present"
  exit 0
fi

if ! have_tool dpkg; then
  echo "setup: not a Debian/Ubuntu system; please install: ${packages[*]}" >&2
  exit 1
fi
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages installed"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  have_tool sudo || { echo "setup: run as root or install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
