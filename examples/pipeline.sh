#!/usr/bin/env bash
# The scan-to-colour pipeline end to end, on a folder of colour images:
#
#   [prepare filter] -> prepare crop -> train-scan -> scan -> train-color -> colorize
#
# Usage:  examples/pipeline.sh COLOUR_DIR WORK_DIR [METADATA]
#
#   COLOUR_DIR  colour art (e.g. the demo corpus), or the root of a Danbooru dump when METADATA is given
#   WORK_DIR    everything is written here, one folder per stage
#   METADATA    optional Danbooru metadata file or folder: only then is `prepare filter` run first (the
#               demo corpus has no metadata); its tag options come from FILTER_ARGS, e.g.
#               FILTER_ARGS="--tag solo --rating g --exclude-tag monochrome"
#
# Real scans: set SCANS=/path/to/scans. Without it (development), half of the colour images are turned
# into scan-like pages by examples/make_fake_scans.py (lines + flat screentone, not luma) and stand in for
# real scans; the other half is the colour domain.
#
# Running the script again on the same WORK_DIR finishes an interrupted run: finished stages are skipped and
# the trainings resume (a larger STEPS trains them longer; the synthetic scans and colorized pages of a model
# trained further are then redone: `--update`). Every other setting is that of the first run, so use a new
# WORK_DIR for other settings.
#
# Settings (environment), toy-sized by default so that every stage runs in seconds; for a real model use
# e.g. SIZE=256 STEPS=20000 WIDTH=64 DEPTH=8 BATCH=16:
#   SIZE   training crop side (multiple of 2**DEPTH)   LOAD  long side images are shrunk to (2 x SIZE)
#   STEPS  optimisation steps of each training   WORKERS  prepare worker processes (default: all cores)
#   WIDTH  colorizer width                      DEPTH  colorizer U-Net depth
#   SCAN_WIDTH, SCAN_BLOCKS  scan generator width and residual blocks
#   BATCH  images per step                      DEVICE auto, cpu or cuda
#   MANGACOLOR  the command (default: mangacolor)   PYTHON  the interpreter for the helper script
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,29p' "$0" >&2
    exit 2
fi
COLOUR_DIR=$1
WORK=$2
META=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
SIZE=${SIZE:-64}
LOAD=${LOAD:-$((2 * SIZE))}
STEPS=${STEPS:-20}
WIDTH=${WIDTH:-8}
DEPTH=${DEPTH:-4}
SCAN_WIDTH=${SCAN_WIDTH:-8}
SCAN_BLOCKS=${SCAN_BLOCKS:-2}
BATCH=${BATCH:-4}
DEVICE=${DEVICE:-auto}
PYTHON=${PYTHON:-python}
read -r -a MC <<< "${MANGACOLOR:-mangacolor}"
mc() { "${MC[@]}" "$@"; }
mkdir -p "$WORK"

# 0. (optional) keep the images whose Danbooru metadata passes the filter; the demo corpus has none
SOURCE=$COLOUR_DIR
if [[ -n $META ]]; then
    read -r -a FILTER <<< "${FILTER_ARGS:-}"
    mc prepare filter "$COLOUR_DIR" "$WORK/filtered" --metadata "$META" "${FILTER[@]}" ${WORKERS:+--workers "$WORKERS"} \
        >/dev/null
    SOURCE=$WORK/filtered
fi

# 1. remove letterbox borders and shrink the long side to LOAD (training crops of SIZE are cut from these);
#    after the filter, its manifest gives each post's original size, so the letterbox is cut exactly
CROP_META=()
if [[ -n $META ]]; then CROP_META=(--metadata "$WORK/filtered/manifest.jsonl"); fi
mc prepare crop "$SOURCE" "$WORK/cropped" --size "$LOAD" "${CROP_META[@]}" ${WORKERS:+--workers "$WORKERS"} >/dev/null

# 2. the two unpaired domains
if [[ -n ${SCANS:-} ]]; then
    COLOUR=$WORK/cropped
else
    # development: alternate files go to the "scan" half and the colour half
    mkdir -p "$WORK/scan_source" "$WORK/colour"
    i=0
    while IFS= read -r -d '' f; do
        if (( i % 2 )); then cp "$f" "$WORK/scan_source/"; else cp "$f" "$WORK/colour/"; fi
        i=$((i + 1))
    done < <(find "$WORK/cropped" -type f ! -name '.*' -print0 | sort -z)
    "$PYTHON" "$HERE/make_fake_scans.py" "$WORK/scan_source" "$WORK/scans"
    SCANS=$WORK/scans
    COLOUR=$WORK/colour
fi

# 3. the scan generator (CycleGAN; only G_s is kept). Both domains are brought to the same scale (LOAD):
#    real scans are often much larger than the colour art. Running the script again resumes the run.
if [[ -f $WORK/scan_run/config.json ]]; then
    mc train-scan --resume "$WORK/scan_run" --steps "$STEPS" >/dev/null
else
    mc train-scan "$SCANS" "$COLOUR" "$WORK/scan_run" --steps "$STEPS" --crop-size "$SIZE" --load-size "$LOAD" \
        --batch-size "$BATCH" --width "$SCAN_WIDTH" --blocks "$SCAN_BLOCKS" --device "$DEVICE" --sample-every 0 \
        >/dev/null
fi

# 4. synthetic scans of every colour image, same names
mc scan "$WORK/scan_run/model.safetensors" "$COLOUR" "$WORK/synthetic" --device "$DEVICE" --update >/dev/null

# 5. the colorizer on (synthetic scan, colour) pairs (again: resumed)
if [[ -f $WORK/colour_run/config.json ]]; then
    mc train-color --resume "$WORK/colour_run" --steps "$STEPS" >/dev/null
else
    mc train-color "$COLOUR" "$WORK/colour_run" --input-dir "$WORK/synthetic" --steps "$STEPS" --crop-size "$SIZE" \
        --load-size "$LOAD" --batch-size "$BATCH" --width "$WIDTH" --depth "$DEPTH" --device "$DEVICE" \
        --sample-every 0 >/dev/null
fi

# 6. colorize the scans
mc colorize "$SCANS" "$WORK/colorized" --model "$WORK/colour_run/model.safetensors" --device "$DEVICE" --update >/dev/null

echo "$WORK/colorized"
