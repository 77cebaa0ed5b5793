"""The front doors' shared step: how one record is offered to a writer, by overflow policy."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

from .errors import QueueFullError, WriterClosedError
from .overflow import OverflowPolicy, OverflowPolicyLike
from .writer import BatchWriter

__all__ = ["REFUSED", "check_policy", "offer_by_policy"]

T = TypeVar("T")

#: What the offer raises when the writer refused the record (already counted as dropped).
REFUSED = (QueueFullError, WriterClosedError)


def check_policy(overflow: OverflowPolicyLike, block_timeout: float | None) -> OverflowPolicy:
    """Return the policy ``overflow`` names, having checked ``block_timeout`` too.

    Raises:
        ValueError: ``overflow`` names no policy, or ``block_timeout`` is negative.
    """
    policy = OverflowPolicy.parse(overflow)
    if block_timeout is not None and (
        isinstance(block_timeout, bool)
        or not isinstance(block_timeout, (int, float))
        or not block_timeout >= 0
    ):
        msg = f"block_timeout must be a number of seconds >= 0 or None, not {block_timeout!r}"
        raise ValueError(msg)
    return policy


def offer_by_policy(
    writer: BatchWriter[T], overflow: OverflowPolicyLike, block_timeout: float | None
) -> Callable[[T], object]:
    """Return the writer method that offers a record under ``overflow``, bound in C.

    ``block`` → ``add(record, block_timeout)``, which raises one of ``REFUSED`` when the
    record is dropped; ``drop_newest`` → ``try_add``; ``drop_oldest`` →
    ``try_add(evict_oldest=True)``. Every refusal is counted in ``records_dropped``.

    Raises:
        ValueError: ``overflow`` names no policy, or ``block_timeout`` is negative.
    """
    policy = check_policy(overflow, block_timeout)
    if policy is OverflowPolicy.BLOCK:
        if block_timeout is None:
            return writer.add
        return functools.partial(writer.add, timeout=block_timeout)
    if policy is OverflowPolicy.DROP_NEWEST:
        return writer.try_add
    return functools.partial(writer.try_add, evict_oldest=True)
