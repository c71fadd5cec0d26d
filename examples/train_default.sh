#!/usr/bin/env bash
# Train a default-style colorizer pair on a folder of colour art, both runs side by side on one machine:
#
#   RUNS/luma   greyscale pages: luma inputs, batch norm   -> RUNS/default.safetensors
#   RUNS/lines  line art: line inputs (prepare lines)      -> RUNS/default_lines.safetensors
#
# `colorize --model RUNS/default.safetensors --line-model RUNS/default_lines.safetensors` then sends each
# page to the model made for its kind, as it does with the pair shipped in assets/.
#
# Usage:  examples/train_default.sh DATA RUNS [TRAIN-COLOR OPTIONS...]
#
# Options after RUNS go to both new runs as they are, quoting kept:
#   examples/train_default.sh art/ runs/ --model-config '{"norm": "layer"}' --vgg-weights "my weights/vgg.pth"
#
# Running the script again on the same RUNS resumes both runs (a larger STEPS trains them longer; every
# other setting is that of the first call). With TIME_LIMIT, each call stops both runs after that many
# minutes, saves them and exits with status 75, so a machine lent by the hour trains in slices:
#
#   while TIME_LIMIT=50 examples/train_default.sh DATA RUNS; [[ $? -eq 75 ]]; do :; done
#
# Settings (environment); the defaults are the recipe of the next default pair (docs/quality.md, "The next
# default model"):
#   STEPS  optimisation steps of each run (30000)    TIME_LIMIT  minutes per call, 0: none (0)
#   WIDTH  U-Net base width (32)                     DEPTH  U-Net depth (6: 2 x 14.6 MB in float16)
#   SIZE   training crop side (256)                  LOAD   long side images are shrunk to (384)
#   BATCH  images per step (32)                      WORKERS  data-loading processes per run (4)
#   VAL    share held out for validation (0.05)      TEST   share kept out of training and validation (0)
#   LINES  line method for the line model (sketch)   DEVICE  auto, cpu or cuda
#   INIT   a colorizer checkpoint both new runs start from (train-color --init; WIDTH and DEPTH are then
#          its own), e.g. INIT=assets/default.safetensors to fine-tune the shipped default on your pages
#   EXTRA  more train-color options for both new runs, split at spaces (options after RUNS keep quoting)
#   MANGACOLOR  the command (default: mangacolor)
# Each run's messages go to RUNS/luma.log and RUNS/lines.log.
set -uo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,33p' "$0" >&2
    exit 2
fi
DATA=$1
RUNS=$2
shift 2
STEPS=${STEPS:-30000}
TIME_LIMIT=${TIME_LIMIT:-0}
WIDTH=${WIDTH:-32}
DEPTH=${DEPTH:-6}
SIZE=${SIZE:-256}
LOAD=${LOAD:-384}
BATCH=${BATCH:-32}
WORKERS=${WORKERS:-4}
VAL=${VAL:-0.05}
TEST=${TEST:-0}
LINES=${LINES:-sketch}
DEVICE=${DEVICE:-auto}
read -r -a MORE <<< "${EXTRA:-}"
MORE+=("$@")
if [[ -n ${INIT:-} ]]; then
    NET=(--init "$INIT")
else
    NET=(--width "$WIDTH" --depth "$DEPTH")
fi
read -r -a MC <<< "${MANGACOLOR:-mangacolor}"
mkdir -p "$RUNS" || exit 2

# one run (this subshell becomes it, so that signals reach it): resumed when its folder holds one, else started
train() {
    local name=$1 input=$2 run=$RUNS/$1
    local each=(--steps "$STEPS" --time-limit "$TIME_LIMIT" --device "$DEVICE" --workers "$WORKERS")
    if [[ -f $run/config.json ]]; then
        exec "${MC[@]}" train-color --resume "$run" "${each[@]}"
    else
        exec "${MC[@]}" train-color "$DATA" "$run" --input "$input" --lines-method "$LINES" "${NET[@]}" \
            --crop-size "$SIZE" --load-size "$LOAD" --batch-size "$BATCH" \
            --val-fraction "$VAL" --test-fraction "$TEST" --half --save-every 500 --sample-every 1000 \
            "${MORE[@]}" "${each[@]}"
    fi
}

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null; }  # each run saves itself and exits with status 75
trap stop INT TERM
train luma luma >"$RUNS/luma.log" 2>&1 &
pids+=($!)
train lines lines >"$RUNS/lines.log" 2>&1 &
pids+=($!)

# report each run as it ends (a failed one does not stop the other, which a later call then finds done)
status=0
names=(luma lines)
ended=(0 0)
while [[ ${ended[0]}${ended[1]} != 11 ]]; do
    for i in 0 1; do
        if [[ ${ended[$i]} -eq 1 ]] || kill -0 "${pids[$i]}" 2>/dev/null; then
            continue
        fi
        wait "${pids[$i]}"
        rc=$?
        ended[$i]=1
        case $rc in
            0) echo "${names[$i]}: finished ($RUNS/${names[$i]})" >&2 ;;
            75) echo "${names[$i]}: stopped and saved; run the script again to go on" >&2 ;;
            *) echo "${names[$i]}: failed with status $rc; the end of $RUNS/${names[$i]}.log:" >&2
               tail -n 3 "$RUNS/${names[$i]}.log" >&2 ;;
        esac
        if [[ $rc -ne 0 && $rc -ne 75 ]]; then
            status=1
        elif [[ $rc -eq 75 && $status -eq 0 ]]; then
            status=75
        fi
    done
    [[ ${ended[0]}${ended[1]} == 11 ]] || sleep 1  # a trapped signal runs once this sleep ends
done
if [[ $status -ne 0 ]]; then
    exit "$status"
fi

# both finished: the float16 weights, each written to a temporary name and renamed into place
for pair in luma:default lines:default_lines; do
    src=$RUNS/${pair%%:*}/model.safetensors
    dst=$RUNS/${pair#*:}.safetensors
    cp "$src" "$dst.tmp" && mv "$dst.tmp" "$dst" || { rm -f "$dst.tmp"; exit 1; }
    echo "$dst"
done
echo "colorize with: ${MC[*]} colorize PAGES OUT --model $RUNS/default.safetensors" \
    "--line-model $RUNS/default_lines.safetensors" >&2
