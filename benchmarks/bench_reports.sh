#!/usr/bin/env bash
# The bench reports and plots committed under benchmarks/results/bench/, from `edgerun bench` and
# `edgerun report` on this machine (about 2 minutes on 2 cores). Run from the repository root
# with the virtual environment active and the plot extra installed (pip install -e '.[plot]').
set -euo pipefail
out=benchmarks/results/bench
mkdir -p "$out"
export COLUMNS=120

# The default model, single-stream, FP32 / INT8 / FP16 (the three files of the cross report).
for precision in fp32 int8 fp16; do
    edgerun bench ppocr-cls --precision "$precision" --duration 5 \
        --json "$out/ppocr-cls-$precision.json" --markdown "$out/ppocr-cls-$precision.md" \
        --plot "$out/ppocr-cls-$precision.png" | tee "$out/ppocr-cls-$precision.txt"
done
edgerun report "$out"/ppocr-cls-fp32.json "$out"/ppocr-cls-int8.json "$out"/ppocr-cls-fp16.json \
    --markdown "$out/report-ppocr-cls.md" --plot "$out/report-ppocr-cls.png" | tee "$out/report-ppocr-cls.txt"

# A sweep of batch and threads on the detector at 224x224 (~282 M MACs per image).
edgerun bench ppocr-det --shape x=1x3x224x224 --batch 1,4,8 --threads 1,2 --duration 3 -n 20 \
    --json "$out/sweep-ppocr-det.json" --csv "$out/sweep-ppocr-det.csv" \
    --plot "$out/sweep-ppocr-det.png" | tee "$out/sweep-ppocr-det.txt"

# The other scenarios on the default model.
edgerun bench ppocr-cls --scenario multi-stream --samples-per-query 8 -n 1000 \
    --json "$out/ppocr-cls-multi-stream.json" | tee "$out/ppocr-cls-multi-stream.txt"
edgerun bench ppocr-cls --scenario offline --batch 16 --duration 3 \
    --json "$out/ppocr-cls-offline.json" | tee "$out/ppocr-cls-offline.txt"
edgerun bench ppocr-cls --scenario server --find-max-qps --latency-bound-ms 20 \
    --json "$out/ppocr-cls-server.json" --plot "$out/ppocr-cls-server.png" | tee "$out/ppocr-cls-server.txt"
