"""Frames offered by a node and the detections that answer them."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

_LABEL = re.compile(r"^[a-z0-9_ -]{1,64}$")


@dataclass(frozen=True)
class Frame:
    """One frame from `P/frames/<camera>`: its header fields and the JPEG bytes."""

    camera: str
    seq: int
    ts: str
    width: int
    height: int
    jpeg: bytes
    header: Dict[str, Any] = field(repr=False)


def parse_frame(payload: bytes) -> Frame:
    """Splits a frame payload (JSON header line, newline, JPEG) and checks the header."""
    newline = payload.find(b"\n")
    if newline < 0:
        raise ValueError("frame payload has no header line")
    try:
        header = json.loads(payload[:newline])
    except json.JSONDecodeError as e:
        raise ValueError(f"frame header is not JSON: {e}") from e
    if not isinstance(header, dict) or header.get("v") != 1:
        raise ValueError("frame header must be an object with v = 1")
    if header.get("format") != "jpeg":
        raise ValueError(f"unsupported frame format {header.get('format')!r}")
    for key, kind in (("camera", str), ("seq", int), ("ts", str), ("width", int), ("height", int)):
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise ValueError(f"frame header field {key!r} must be {kind.__name__}")
    jpeg = payload[newline + 1 :]
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("frame body is not a JPEG")
    return Frame(header["camera"], header["seq"], header["ts"], header["width"], header["height"], jpeg, header)


@dataclass
class Detection:
    """One detected object; `bbox` is `[x, y, w, h]` normalized to 0..1, origin top-left."""

    label: str
    confidence: float
    bbox: List[float]
    track_id: Optional[Union[str, int]] = None
    attributes: Optional[Dict[str, Any]] = None

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not _LABEL.match(self.label):
            raise ValueError(f"label {self.label!r} must be 1..64 of [a-z0-9_ -]")
        if not _finite(self.confidence) or not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence!r} must be a finite number in 0..1")
        if len(self.bbox) != 4 or not all(_finite(v) and v >= 0.0 for v in self.bbox):
            raise ValueError(f"bbox {self.bbox!r} must be four finite numbers >= 0")
        x, y, w, h = self.bbox
        if x + w > 1.0 + 1e-9 or y + h > 1.0 + 1e-9:
            raise ValueError(f"bbox {self.bbox!r} must lie inside 0..1 (x + w <= 1, y + h <= 1)")
        if isinstance(self.track_id, str) and not 1 <= len(self.track_id) <= 64:
            raise ValueError("track_id must be 1..64 characters")

    def to_json(self) -> Dict[str, Any]:
        """The detection as it goes on the wire."""
        out: Dict[str, Any] = {"label": self.label, "confidence": float(self.confidence), "bbox": [float(v) for v in self.bbox]}
        if self.track_id is not None:
            out["track_id"] = self.track_id
        if self.attributes is not None:
            out["attributes"] = self.attributes
        return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def detections_message(worker: str, frame: Frame, detections: List[Detection]) -> Dict[str, Any]:
    """The `P/detections/<camera>` message answering `frame`: its seq and ts, copied exactly."""
    return {
        "v": 1,
        "worker": worker,
        "camera": frame.camera,
        "seq": frame.seq,
        "ts": frame.ts,
        "detections": [d.to_json() for d in detections],
    }
