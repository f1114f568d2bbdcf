"""`edgerun bench` as a library: scenarios, inputs, LoadGen loops, diagnostics, results, sweeps, reports, selftest."""
