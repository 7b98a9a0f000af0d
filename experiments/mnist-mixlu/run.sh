#!/usr/bin/env bash
# The MNIST MixLU runs of docs/experiments.md, in the order they are worth having: each line is
# a resumable `netc sweep` (a rerun skips finished runs and continues an unfinished one), and each
# later line only adds seeds or readings, so the script can be stopped and started at any point.
# One thread per run; results are the same for any thread count.
#
#   experiments/mnist-mixlu/run.sh            # all of it, ~9 core-minutes per 20-epoch run
#   NETC=target/release/netc experiments/mnist-mixlu/run.sh
#
# Readings (docs/language.md, `mixlu`): the thesis's reference code is mask=resample, grad=relu,
# eval=sample; the exact reading is mask=resample, grad=exact, eval=expect; the fixed reading is
# the null control (a ReLU net in disguise, tests/equivalence.rs). At negfrac=0 every reading is
# the same program (tests/equivalence.rs), so only the thesis-code folder runs 0%.
set -euo pipefail
cd "$(dirname "$0")/../.."
netc="${NETC:-target/release/netc}"
out=experiments/mnist-mixlu
sweep() { "$netc" sweep examples/mixlu_lenet.net --data mnist --threads 1 "$@"; }

thesis() { sweep --out "$out/thesis-code" --set negfrac=0:0.1:0.01 --set grad=relu --set eval=sample --seeds "$1"; }
exact() { sweep --out "$out/resample-exact" --set negfrac=0.02:0.1:0.02 --set grad=exact --set eval=expect --seeds "$1"; }
fixed() { sweep --out "$out/fixed" --set negfrac=0.1 --set mask=fixed --set grad=exact --seeds "$1"; }

thesis 0
thesis 0,1
thesis 0,1,2
exact 0,1,2
thesis 0:4:1
fixed 0,1,2
