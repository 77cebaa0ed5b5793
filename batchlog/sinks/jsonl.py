"""``JsonLinesSink``: a JSON Lines file, one ``write`` per batch, logrotate-friendly."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable
from typing import Any, Union

from .._types import AnyRecord
from .._validate import check_bool
from ._base import SinkBase, check_file_path
from ._encode import encode_record, json_lines, to_json

__all__ = ["JsonLinesSink", "StrPath"]

#: A file system path, as ``open()`` takes it.
StrPath = Union[str, "os.PathLike[str]"]

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_JSON_ESCAPE = "batchlog.json_escape"  # the codec error handler below, once registered


def _json_escape(error: UnicodeError) -> tuple[str, int]:
    r"""Write characters the file's encoding lacks as JSON escapes (``\u20ac``).

    Only text inside JSON strings can be outside ASCII, where an escape means the same
    character; the encoded text holds no lone surrogate, so UTF-16 can spell every one.
    """
    if not isinstance(error, UnicodeEncodeError):
        raise error
    units = error.object[error.start : error.end].encode("utf-16-be")
    escapes = "".join(
        f"\\u{int.from_bytes(units[index : index + 2], 'big'):04x}"
        for index in range(0, len(units), 2)
    )
    return escapes, error.end


class JsonLinesSink(SinkBase):
    r"""Appends each record as one line of JSON (see ``batchlog.sinks.encode_record``).

    A batch becomes one ``os.write`` of all its lines to a file opened with ``O_APPEND``,
    so processes appending to the same file never interleave within a batch's lines, and
    the file holds whole lines unless the disk fills up mid-write.

    The file is opened on the first batch (created if missing, never truncated). Before
    each batch the sink compares the path's device and inode with the open file's, as
    ``logging.handlers.WatchedFileHandler`` does: if logrotate (or anyone) moved or
    deleted the file, the sink reopens the path, creating a new file.

    ``close()`` closes the file (waiting for a batch in flight); after ``reopen()`` the
    next batch opens the path again. In a child made by ``os.fork()`` the sink keeps
    appending through the descriptor it inherited: with ``O_APPEND`` every write goes to
    the end of the file, whoever else appends (see ``batchlog.sinks.SinkBase``).

    Args:
        path: The file to append to.
        fsync: Call ``os.fsync`` after each batch, so a batch survives a power loss
            once the call returns (slower: one disk flush per batch).
        encoding: The text encoding of the file. Every line is written as UTF-8 by
            default; in another encoding, a character it cannot encode is written as a
            JSON escape (``\u20ac``), so every line stays valid JSON. NUL and lone
            surrogates never reach the file (see ``batchlog.sinks.encode_record``).

    Raises:
        TypeError: ``path`` is not a path, or ``fsync`` is not a bool.
        LookupError: ``encoding`` names no codec.

    A call raises ``OSError`` when the file cannot be opened or written (the writer counts
    the batch as failed), and ``ValueError`` after ``close``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A ``batchlog.sinks.SinkBase``: ``reopen()``, fork safety.
    """

    __slots__ = ("_descriptor", "_utf8", "encoding", "fsync", "path")

    def __init__(
        self, path: StrPath = "batchlog.jsonl", *, fsync: bool = False, encoding: str = "utf-8"
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            msg = f"path must be a str or os.PathLike, not {path!r}"
            raise TypeError(msg)
        self.fsync = check_bool("fsync", fsync)
        codec = codecs.lookup(encoding)  # LookupError now, not on the first batch
        self._utf8 = codec.name == "utf-8"
        if not self._utf8:
            codecs.register_error(_JSON_ESCAPE, _json_escape)  # the same handler every time
        self.path: str = os.fspath(path)
        check_file_path(self.path)
        self.encoding = encoding
        self._descriptor: int | None = None
        super().__init__()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, fsync={self.fsync!r})"

    def __call__(self, batch: list[AnyRecord]) -> None:
        """Append one JSON line per record of ``batch``, in one write.

        Raises:
            OSError: The file could not be opened or written.
            ValueError: The sink is closed.
        """
        self.write_json(encode_record(record) for record in batch)

    def write_json(self, objects: Iterable[Any]) -> int:
        """Append each of ``objects`` as one line of JSON, as they are, in one write.

        The lower-level step of ``__call__``: no record encoding, so any JSON-ready
        objects can be written (the dead-letter file of
        ``batchlog.sinks.FallbackSink`` uses it). Returns the number of lines.

        Raises:
            OSError: The file could not be opened or written.
            ValueError: The sink is closed.
        """
        data: bytes | bytearray
        if self._utf8:  # json_bytes's lines: orjson's bytes when it is installed
            data, count = json_lines(objects)
        else:
            texts = [to_json(item) for item in objects]
            count = len(texts)
            texts.append("")  # so the join ends the last line too
            data = "\n".join(texts).encode(self.encoding, _JSON_ESCAPE)
        if not count:
            return 0
        with self._sink_lock():
            self._check_open()
            descriptor = self._current_descriptor()
            view = memoryview(data)
            while view:  # one call unless the kernel writes only part (a full disk, a signal)
                written = os.write(descriptor, view)
                view = view[written:]
            if self.fsync:
                os.fsync(descriptor)
        return count

    def _current_descriptor(self) -> int:
        """Return the open descriptor, reopening the path if the file was rotated away."""
        descriptor = self._descriptor
        if descriptor is not None:
            try:
                on_disk = os.stat(self.path)
            except FileNotFoundError:
                on_disk = None
            opened = os.fstat(descriptor)
            if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (
                opened.st_dev,
                opened.st_ino,
            ):
                return descriptor
            self._descriptor = None
            os.close(descriptor)
        descriptor = os.open(self.path, _FLAGS, 0o666)  # the umask decides, as open() does
        self._descriptor = descriptor
        return descriptor

    def _release(self) -> None:
        """Close the file (``close()`` holds the lock)."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)

    def _forget_inherited(self, *, busy: bool) -> None:
        """In a forked child: keep the inherited descriptor, which appends safely here too.

        The child's copy shares the parent's open file: closing it would not disturb the
        parent, but keeping it costs nothing, and each write still lands whole at the end.
        """
