"""TensorRT: engine building, the engine cache, optimization profiles and the TensorRT backend.

Everything here except `api`, `build` and `backend` runs without TensorRT (profiles, cache
keys, manifests, recipes), so it is tested on any machine; the TensorRT calls themselves are
kept in those three modules and checked against the API surface of every supported version.
"""
