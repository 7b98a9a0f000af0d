#!/usr/bin/env bash
# The thesis's comparison of resampled NegLUs with noisy ReLUs (docs/experiments.md, "NegLUs
# against noise"): the units of compare/compare.net at p = 4% and 8%, 20 epochs, seeds 0–2, in
# rounds so that every arm has the same number of seeds at any point. The MixLU arms themselves
# are run.sh's thesis-code and resample-exact folders. Resumable like run.sh; it writes other
# folders than run.sh, so the two can run at once, one per core.
#
#   NETC=target/release/netc experiments/mnist-mixlu/compare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
netc="${NETC:-target/release/netc}"
out=experiments/mnist-mixlu/compare
sweep() { "$netc" sweep "$out/compare.net" --data mnist --threads 1 --net "$1" --out "$out/$1" "${@:2}"; }

for seeds in 0 0,1 0,1,2; do
    sweep dropout_lenet --set p=0.04,0.08 --seeds "$seeds"
    sweep leaky_lenet --set p=0.04,0.08 --seeds "$seeds"
    sweep gauss_lenet --set p=0.04,0.08 --seeds "$seeds"
    sweep noisy_lenet --set std=0.1 --seeds "$seeds"
    sweep prelu_lenet --seeds "$seeds"
done
