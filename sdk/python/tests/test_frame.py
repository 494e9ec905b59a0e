"""Frame parsing, detection checks and message shapes, against the JSON Schemas."""

import io
import json
import math
import pathlib
import sys

import jsonschema
import numpy as np
import pytest
from PIL import Image

from heldar_worker import Detection, Frame, detections_message, parse_frame

SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "schema"
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import moving_object  # noqa: E402


def schema(name):
    return json.loads((SCHEMA / name).read_text())


HEADER = {"v": 1, "camera": "front", "seq": 42, "ts": "2026-11-24T14:16:24.123Z", "width": 64, "height": 48, "format": "jpeg"}


def jpeg(image):
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


def payload(header=HEADER, body=b"\xff\xd8\xff\xd9"):
    return json.dumps(header).encode() + b"\n" + body


def test_parses_a_frame_and_the_header_matches_its_schema():
    frame = parse_frame(payload())
    assert (frame.camera, frame.seq, frame.ts, frame.width, frame.height) == ("front", 42, HEADER["ts"], 64, 48)
    assert frame.jpeg == b"\xff\xd8\xff\xd9"
    jsonschema.validate(frame.header, schema("frame-header.json"))


@pytest.mark.parametrize(
    "bad, words",
    [
        (b"no newline", "header line"),
        (b"{nope\n\xff\xd8", "not JSON"),
        (payload(dict(HEADER, v=2)), "v = 1"),
        (payload(dict(HEADER, format="png")), "format"),
        (payload(dict(HEADER, seq="42")), "seq"),
        (payload(body=b"GIF89a"), "JPEG"),
    ],
)
def test_refuses_bad_frames(bad, words):
    with pytest.raises(ValueError, match=words):
        parse_frame(bad)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(label="Person!"), "label"),
        (dict(confidence=math.nan), "confidence"),
        (dict(confidence=1.5), "confidence"),
        (dict(bbox=[0.8, 0.1, 0.3, 0.3]), "inside"),
        (dict(bbox=[0.1, 0.1, 0.3]), "four"),
        (dict(track_id=""), "track_id"),
    ],
)
def test_detections_are_checked_like_the_node_does(kwargs, words):
    fields = dict(label="person", confidence=0.9, bbox=[0.1, 0.1, 0.2, 0.2])
    fields.update(kwargs)
    with pytest.raises(ValueError, match=words):
        Detection(**fields)


def test_the_message_echoes_seq_and_ts_and_matches_its_schema():
    frame = parse_frame(payload())
    message = detections_message("w1", frame, [Detection("person", 0.9, [0.1, 0.2, 0.3, 0.4], track_id=7)])
    jsonschema.validate(message, schema("detections.json"))
    assert (message["seq"], message["ts"], message["camera"]) == (42, HEADER["ts"], "front")
    jsonschema.validate(detections_message("w1", frame, []), schema("detections.json"))


def test_every_schema_is_a_valid_schema():
    for path in SCHEMA.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_the_example_finds_a_moved_square():
    def picture(x):
        image = Image.new("L", (100, 80), 0)
        image.paste(255, (x, 30, x + 10, 40))
        return jpeg(image)

    finder = moving_object.MotionFinder()
    frame = lambda seq, x: Frame("cam", seq, HEADER["ts"], 100, 80, picture(x), HEADER)  # noqa: E731
    assert finder(frame(1, 20)) == [], "nothing to compare the first frame with"
    found = finder(frame(2, 50))
    assert len(found) == 1
    x, y, w, h = found[0].bbox
    assert 0.15 <= x <= 0.25 and 0.55 <= x + w <= 0.65, found[0].bbox
    assert 0.3 <= y <= 0.4 and 0.4 <= y + h <= 0.5, found[0].bbox
    assert finder(frame(3, 50)) == [], "nothing moved"
    assert np.asarray(moving_object.grey(picture(5))).shape == (80, 100)
