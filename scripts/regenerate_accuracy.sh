#!/usr/bin/env bash
# Regenerate every number in docs/accuracy.md and the bundled model's card and
# calibration: bash scripts/regenerate_accuracy.sh [path/to/librispeech]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/librispeech}
python=${PYTHON:-.venv/bin/python}
results=docs/results

# The calibration shipped with the bundled model, its honesty tables and pictures.
"$python" scripts/calibration_report.py --data "$data" --model bundled --out "$results/calibration" \
    --ship biometrics/models/ecapa-distilled
"$python" scripts/accuracy_report.py --data "$data" --model bundled --out "$results/accuracy"
"$python" scripts/evaluate.py --data "$data/test-other-dev" --model bundled \
    --out "$results/evaluate-test-other-dev"
# Streaming on every held-out speaker: test-other-dev and those kept out of train-clean-5.
"$python" scripts/compare_streaming.py --data "$data/test-other-dev" "$data/train-clean-5" \
    --speakers 367 533 1998 1688 2033 19 163 1737 2136 4640 8629 --model bundled \
    --chunk-seconds 2 --max-streams-per-speaker 20 --schedule 3 2 10 --out "$results/streaming"
# The model card's comparison (resemblyzer needs the train extras).
for set in test-other-dev held-out; do
    if [ "$set" = held-out ]; then
        where=(--data "$data/train-clean-5" --speakers 19 163 1737 2136 4640 8629)
    else
        where=(--data "$data/test-other-dev")
    fi
    "$python" scripts/evaluate.py "${where[@]}" --model bundled --model resemblyzer \
        --model random:256 --test-seconds 3 --out "$results/models-$set"
done
"$python" scripts/benchmark_embedding.py --model resemblyzer --model bundled --model bundled@onnx \
    --model random:1024 --seconds 3 10 --repeats 15 --out "$results/benchmark"
