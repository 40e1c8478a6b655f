"""The Avro event contract of fangxian (防线) and its single-object codec."""

from schemas.codec import Codec
from schemas.errors import InvalidEvent

__all__ = ["Codec", "InvalidEvent"]
