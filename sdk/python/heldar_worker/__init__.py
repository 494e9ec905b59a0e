"""Perception workers for heldar-edge: frames in over MQTT, detections out."""

from .frame import Detection, Frame, detections_message, parse_frame
from .worker import Worker

__all__ = ["Detection", "Frame", "Worker", "detections_message", "parse_frame"]
