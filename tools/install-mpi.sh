#!/usr/bin/env bash
# Installs what `cargo build -p netc-cli --features mpi` and its multi-process tests need, from
# Debian's packages: MPICH (mpiexec, the library and its headers) and libclang, with which the
# `mpi` crate generates its bindings (docs/distributed.md). Does nothing when they are present.
# Exits non-zero, saying why, when they are missing and cannot be installed (not root and no
# sudo, no apt-get, or the install fails).
set -euo pipefail
packages=(mpich libmpich-dev libclang-dev)

installed=$(dpkg-query -W -f='${Status}\n' "${packages[@]}" 2> /dev/null | grep -c '^install ok installed$' || true)
if command -v mpiexec > /dev/null && [ "$installed" = "${#packages[@]}" ]; then
    exit 0
fi
if ! command -v apt-get > /dev/null; then
    echo "install-mpi: no apt-get; install MPICH or Open MPI and libclang by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo > /dev/null; then
        echo "install-mpi: not root and no sudo: cannot install ${packages[*]}" >&2
        exit 1
    fi
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q > /dev/null
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" > /dev/null
echo "install-mpi: installed ${packages[*]}"
