"""What a front door does with a record when the writer's queue is full."""

from __future__ import annotations

import enum
from typing import Union

__all__ = ["OverflowPolicy", "OverflowPolicyLike"]


class OverflowPolicy(str, enum.Enum):
    """What to do with a record that arrives while the queue is full.

    Everywhere a policy is accepted, its string value is accepted too, in any case.

    .. versionadded:: 0.1.0
    """

    #: Wait for room (optionally at most ``block_timeout`` seconds, then drop).
    BLOCK = "block"
    #: Refuse the new record and count it as dropped.
    DROP_NEWEST = "drop_newest"
    #: Discard the oldest waiting record (counted as evicted) and accept the new one.
    DROP_OLDEST = "drop_oldest"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: OverflowPolicyLike) -> OverflowPolicy:
        """Return the policy for ``value``, a member or its string value in any case.

        Raises:
            ValueError: ``value`` names no policy; the message lists the valid values.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        valid = ", ".join(repr(member.value) for member in cls)
        msg = f"overflow must be one of {valid} (or an OverflowPolicy), not {value!r}"
        raise ValueError(msg)


OverflowPolicyLike = Union[OverflowPolicy, str]
