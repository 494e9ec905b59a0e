#!/usr/bin/env python3
"""Example worker: finds the moving object in each camera by frame differencing.

    python3 examples/moving_object.py --node nvr-01 [--host 127.0.0.1] [--port 1883]

Needs `pip install './sdk/python[examples]'` (Pillow and numpy).
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from heldar_worker import Detection, Frame, Worker

THRESHOLD = 40  # grey-level change that counts as motion


def find_motion(previous: Optional[np.ndarray], current: np.ndarray) -> List[Detection]:
    """The bounding box of the pixels that changed between two grey images, as one detection."""
    if previous is None or previous.shape != current.shape:
        return []
    changed = np.abs(current.astype(np.int16) - previous.astype(np.int16)) > THRESHOLD
    fraction = float(changed.mean())
    if not changed.any() or fraction < 0.0005:
        return []
    rows = np.flatnonzero(changed.any(axis=1))
    cols = np.flatnonzero(changed.any(axis=0))
    height, width = current.shape
    x, y = cols[0] / width, rows[0] / height
    w, h = (cols[-1] + 1) / width - x, (rows[-1] + 1) / height - y
    confidence = min(0.99, max(0.5, 0.5 + fraction * 5))
    return [Detection("object", round(confidence, 3), [round(x, 4), round(y, 4), round(w, 4), round(h, 4)])]


def grey(jpeg: bytes) -> np.ndarray:
    """Decodes a JPEG to a grey image."""
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"))


class MotionFinder:
    """Keeps the previous frame of each camera."""

    def __init__(self) -> None:
        self.previous: Dict[str, np.ndarray] = {}

    def __call__(self, frame: Frame) -> List[Detection]:
        current = grey(frame.jpeg)
        found = find_motion(self.previous.get(frame.camera), current)
        self.previous[frame.camera] = current
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True, help="the node id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default="heldar", help="the node's mqtt.topic_prefix")
    parser.add_argument("--worker-id", default="motion")
    parser.add_argument("--share-group", help="share frames with other workers of this group")
    parser.add_argument("--max-fps", type=float, help="the most frames per second this worker takes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    worker = Worker(
        args.worker_id,
        MotionFinder(),
        node_id=args.node,
        host=args.host,
        port=args.port,
        topic_prefix=args.prefix,
        share_group=args.share_group,
        labels=["object"],
        max_fps=args.max_fps,
        model="frame-difference",
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.request_stop())
    worker.run_forever()


if __name__ == "__main__":
    main()
