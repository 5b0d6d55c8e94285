"""The send direction: push warehouse rows into Customer.io (Track API or Data Pipelines API).

    import dlt
    from customerio_source.send import customerio_track, send_as

    pipeline = dlt.pipeline("push_people", destination=customerio_track(operations={"people": "identify"}))
    customerio_source.runner.load(pipeline, source)

See ``destination.py`` (configuration, crash safety), ``operations.py`` (what rows become),
``push.py`` (batching, ordering, rejections) and ``cli.py`` (``customerio-pipeline push``).
"""

from .destination import customerio, customerio_track, send_as
from .operations import Operation, parse_operation

__all__ = ["customerio", "customerio_track", "send_as", "Operation", "parse_operation"]
