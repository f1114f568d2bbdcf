"""Dynamic batching: concurrent requests merged into batches in front of any session.

`DynamicBatcher` (``batcher``) does the merging; `BatchedSession` (``session``) is the `Session`
that ``load(..., batching=...)`` returns, and `batching_options` turns that argument into batcher
keywords; ``options`` checks the batcher's arguments. ``requests`` holds the request/outcome records and
the row split/stack helpers, ``stats`` the counters behind `DynamicBatcher.stats`.
"""

from edgerun.runtime.batching.batcher import DynamicBatcher
from edgerun.runtime.batching.session import BatchedSession, batching_options

__all__ = ["BatchedSession", "DynamicBatcher", "batching_options"]
