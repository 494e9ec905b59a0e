"""Perception workers for heldar-edge: frames in over MQTT, detections out; and commands to the node."""

from .commands import (
    ERROR_CODES,
    CommandClient,
    CommandError,
    read_secret,
    request_payload,
    sign,
    timestamp,
    topic_root,
)
from .frame import Detection, Frame, detections_message, parse_frame
from .worker import Worker

__all__ = [
    "ERROR_CODES",
    "CommandClient",
    "CommandError",
    "Detection",
    "Frame",
    "Worker",
    "detections_message",
    "parse_frame",
    "read_secret",
    "request_payload",
    "sign",
    "timestamp",
    "topic_root",
]
