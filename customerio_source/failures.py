"""One line for a failed pipeline step: the table, the root cause and the limit in force.

dlt wraps a failing load job in several exceptions (``PipelineStepFailed`` -> ``LoadClientJob...`` ->
``Database...Exception`` -> the driver's error), and a job's failure text is often a whole traceback. This
module walks that chain by public attributes only (``exception``, ``job_id``, ``failed_message``,
``__cause__``) and keeps what a user can act on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .errors import CustomerIOError

OUT_OF_MEMORY = re.compile(r"out of memory", re.IGNORECASE)
_TRACEBACK_NOISE = ("Traceback (most recent call last)", "The above exception", "During handling of the above")
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?(?P<name>[A-Za-z_]\w*(?:Error|Exception|Exit|Failed))(?::\s*(?P<text>.*))?$"
)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: dlt's ``exception`` attribute first, then ``__cause__``/``__context__``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "exception", None)
        current = (
            wrapped if isinstance(wrapped, BaseException) else None
        ) or current.__cause__ or current.__context__


def root_cause(exc: BaseException) -> BaseException:
    """The connector's own error (a ``CustomerIOError``) behind dlt's wrappers, else ``exc`` itself."""
    for item in exception_chain(exc):
        if isinstance(item, CustomerIOError):
            return item
    return exc


def failed_job(exc: BaseException) -> str | None:
    """The table of the load job that failed (dlt job ids are ``<table>.<file id>[.<retry>].<format>``)."""
    for item in exception_chain(exc):
        job_id = getattr(item, "job_id", None)
        if isinstance(job_id, str) and job_id:
            return job_id.split(".", 1)[0]
    return None


def failed_table(exc: BaseException) -> str | None:
    """The table whose load job failed, or the resource whose extraction failed (dlt's extraction errors
    name their ``pipe_name``)."""
    job = failed_job(exc)
    if job:
        return job
    for item in exception_chain(exc):
        pipe = getattr(item, "pipe_name", None)
        if isinstance(pipe, str) and pipe:
            return pipe
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether the failure is the database running out of memory (DuckDB's ``OutOfMemoryException``)."""
    for item in exception_chain(exc):
        if "OutOfMemory" in type(item).__name__:
            return True
        for text in (str(item), str(getattr(item, "failed_message", "") or "")):
            if OUT_OF_MEMORY.search(text):
                return True
    return False


def root_message(exc: BaseException) -> str:
    """The innermost error's own first line, never empty (a traceback held as text is reduced to its error)."""
    best = ""
    for item in exception_chain(exc):
        failed = getattr(item, "failed_message", None)
        text = error_from_traceback(failed) if isinstance(failed, str) and failed else ""
        own = text or first_error_line(str(item))
        if own:
            best = own
    return best or type(exc).__name__


def first_error_line(text: str) -> str:
    """The first line of ``text`` that says something (the error line of an embedded traceback if any)."""
    if "Traceback (most recent call last)" in text:
        found = error_from_traceback(text)
        if found:
            return found
    for line in text.strip().splitlines():
        line = line.strip()
        if line and not line.endswith("with exception:"):
            return line
    return ""


def error_from_traceback(text: str) -> str:
    """The first (root) error of a traceback printed as text: ``Out of Memory Error: could not allocate ...``."""
    for line in text.splitlines():
        if not line or line[0].isspace() or line.startswith(_TRACEBACK_NOISE):
            continue
        match = _EXCEPTION_LINE.match(line.strip())
        if match:
            return (match.group("text") or match.group("name")).strip()
    return ""
