"""Dynamic batching: concurrent requests merged into batches in front of any session.

`DynamicBatcher` (``batcher``) does the merging; `BatchedSession` (``session``) is the `Session`
that ``load(..., batching=...)`` returns, `batched_session` makes one, and `batching_options` turns
that argument into batcher keywords; ``policy`` picks the device defaults (instances, max batch
size, measured once per model and device); ``options`` checks the batcher's arguments. ``requests``
holds the request/outcome records and the row split/stack helpers, ``stats`` the counters behind
`DynamicBatcher.stats`.
"""

from edgerun.runtime.batching.batcher import DynamicBatcher
from edgerun.runtime.batching.policy import BatchPolicy, batch_policy
from edgerun.runtime.batching.session import BatchedSession, batched_session, batching_options

__all__ = ["BatchPolicy", "BatchedSession", "DynamicBatcher", "batch_policy", "batched_session", "batching_options"]
