#!/usr/bin/env bash
# The base population of issue 11 (item 4): behaviour-cloned bases made by the shipped base's recipe with other
# seeds, and one with another demonstration mix. Training population: seeds 100-103 (checkpoints/bases/
# population.json); held out, never trained against: seeds 200-203 (checkpoints/bases/held_out.json).
# Each base takes about 1.5 min here (demonstrations + 60 epochs + its 20-episode evaluation); each is reproduced
# bit for bit by its command, so they are made, not shipped. Usage: tools/make_bases.sh [OUT_DIR (runs/bases)]
set -euo pipefail
out=${1:-runs/bases}
mkdir -p "$out"
recipe=(--demos-per-task 22 --demo-counts cube_lift 4 close_drawer 4 stack_cube 35 stand_cup_up 20
        --horizon 16 --execute-steps 16)
other_mix=(--demos-per-task 30 --demo-counts cube_lift 6 close_drawer 6 stack_cube 40 stand_cup_up 25
           --horizon 16 --execute-steps 16)
for seed in 100 101 102 200 201 202; do
  [ -f "$out/seed$seed.json" ] || .venv/bin/base-train --out "$out/seed$seed" --seed "$seed" "${recipe[@]}"
done
for seed in 103 203; do
  [ -f "$out/mix_seed$seed.json" ] || .venv/bin/base-train --out "$out/mix_seed$seed" --seed "$seed" "${other_mix[@]}"
done
