"""Old private home of the HTTP encoders, now public in ``batchlog.sinks.encoders``.

Kept only for the imports that still name it (``make_encoder(name)``); new code imports
``batchlog.sinks.encoders``.
"""

from __future__ import annotations

from .encoders import ENCODER_NAMES, Encoder
from .encoders import encoder_named as make_encoder

__all__ = ["ENCODER_NAMES", "Encoder", "make_encoder"]
