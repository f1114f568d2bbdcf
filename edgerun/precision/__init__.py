"""The precision pipeline: calibration data, INT8 Q/DQ quantization, FP16 conversion and the artifact cache."""
