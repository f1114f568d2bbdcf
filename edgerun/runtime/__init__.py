"""The runtime: a model file, the device and its defaults, the plan, feed checks, `Session`, the batcher and backends.

Nothing here imports TensorRT, CUDA or the precision pipeline: the CPU path stays small.
"""
