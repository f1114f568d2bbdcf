"""TensorRT and CUDA: the registry entry, engine building, the engine cache, profiles, the backend and the CUDA layer.

`entry` is all the CPU path imports. Everything except `api`, `build`, `backend` and `cuda` runs
without TensorRT (profiles, cache keys, manifests, recipes), so it is tested on any machine; the
TensorRT calls themselves are checked against the API surface of every supported version.
"""

NOT_INSTALLED = (
    "the tensorrt Python package is not importable (JetPack: apt install python3-libnvinfer; "
    "desktop: pip install 'edgerun[tensorrt]')"
)
"""Why TensorRT cannot run where its Python package is missing, with the install command per platform."""
