"""The limits of Customer.io's send APIs (``../shared/spec/README.md``, the Track spec's descriptions).

Where the documents say "KB" this module reads 1,000 bytes, the stricter reading: a request packed to
these sizes is accepted whichever one Customer.io means.
"""

from __future__ import annotations

REQUEST_BYTES = 500_000
"""A v2 ``/batch`` (and a Data Pipelines ``/batch``) request body, at most."""
ITEM_BYTES = 32_000
"""One batch item (and a v2 ``/entity`` body), at most."""
IDENTIFIER_BYTES = 150
ATTRIBUTE_NAME_BYTES = 150
ATTRIBUTE_VALUE_BYTES = 1000
ATTRIBUTES_PER_CALL = 300
EVENT_NAME_BYTES = 100
EVENT_DATA_BYTES = 100_000
SEGMENT_IDS_PER_CALL = 1000
TRACK_MAX_RATE = 1000.0
"""The Track API's documented budget: about 3,000 requests per 3 s for the whole workspace."""
DEFAULT_RATE = 100.0

LIMITS = {
    "request_bytes": REQUEST_BYTES,
    "item_bytes": ITEM_BYTES,
    "identifier_bytes": IDENTIFIER_BYTES,
    "attribute_name_bytes": ATTRIBUTE_NAME_BYTES,
    "attribute_value_bytes": ATTRIBUTE_VALUE_BYTES,
    "attributes_per_call": ATTRIBUTES_PER_CALL,
    "event_name_bytes": EVENT_NAME_BYTES,
    "event_data_bytes": EVENT_DATA_BYTES,
    "segment_ids_per_call": SEGMENT_IDS_PER_CALL,
}
