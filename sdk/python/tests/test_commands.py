"""Command signing and request payloads, against the node's verifier rules and the JSON Schema."""

import hashlib
import hmac
import json
import pathlib
import re
from datetime import datetime, timedelta, timezone

import jsonschema
import pytest

from heldar_worker import CommandClient, CommandError, read_secret, request_payload, sign, timestamp, topic_root

SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "schema"
REQUEST_SCHEMA = json.loads((SCHEMA / "command-request.json").read_text())
REPLY_SCHEMA = json.loads((SCHEMA / "command-reply.json").read_text())

ROOT = "heldar/nvr-01"

LOCK_ARGS = b'{"cameras":["front"],"from":"2026-11-24T13:00:00Z","to":"2026-11-24T13:10:00Z"}'
# v2 over root heldar/nvr-01 (checked with `printf … | openssl dgst -sha256 -hmac s3cret`).
LOCK_SIG = "907a2ae6c8592d3b72d698caa95487e2b5432edb6a906c87edee840dabf0806e"

# The worked example of docs/commands.md (the node's Rust unit test checks the same sig).
DOCS_ARGS = b'{"cameras":["front"],"from":"2026-11-24T13:55:00Z","to":"2026-11-24T14:05:00Z","reason":"break-in"}'
DOCS_SIG = "20daa099bcb6127c842c649feb18f9e191384b6d223393f957cfbc70d4ee0dee"
DOCS_MD = pathlib.Path(__file__).resolve().parents[3] / "docs" / "commands.md"


def signed_args(payload: bytes) -> bytes:
    """The bytes of `args` as they stand in a payload this SDK wrote: between `"args":` and `,"auth"`."""
    head, _, rest = payload.partition(b'"args":')
    assert rest, payload
    args, sep, _ = rest.partition(b',"auth"')
    assert sep, payload
    return args


def verify(payload: bytes, name: str, secret: bytes, root: str = ROOT) -> bool:
    """What the node of topic root `root` does: v2, HMAC over its root and the raw bytes of
    `args` (empty when absent), constant-time compare."""
    request = json.loads(payload)
    if request["v"] != 2:
        return False
    auth = request["auth"]
    args = signed_args(payload) if "args" in request else b""
    message = f"v2\n{root}\n{name}\n{request['id']}\n{auth['ts']}\n{auth['nonce']}\n".encode() + args
    return hmac.compare_digest(hmac.new(secret, message, hashlib.sha256).hexdigest(), auth["sig"])


def test_the_test_vector():
    assert sign("s3cret", ROOT, "lock", "r-1", "2026-11-24T14:00:00.000Z", "nonce-0001", LOCK_ARGS) == LOCK_SIG
    assert sign(b"s3cret", ROOT, "lock", "r-1", "2026-11-24T14:00:00.000Z", "nonce-0001", LOCK_ARGS) == LOCK_SIG
    message = b"v2\nheldar/nvr-01\nlock\nr-1\n2026-11-24T14:00:00.000Z\nnonce-0001\n" + LOCK_ARGS
    assert hmac.new(b"s3cret", message, hashlib.sha256).hexdigest() == LOCK_SIG


def docs_example_payload(root: str = ROOT) -> bytes:
    return request_payload(
        "lock",
        {"cameras": ["front"], "from": "2026-11-24T13:55:00Z", "to": "2026-11-24T14:05:00Z", "reason": "break-in"},
        root=root,
        key="ops",
        secret="6f1c0e3b9a7d4e21",
        id="op-20261124-01",
        ts="2026-11-24T14:05:00.000Z",
        nonce="4b8e2f6a1c9d3e7f",
    )


def test_the_worked_example_of_docs_commands_md():
    sig = sign(
        "6f1c0e3b9a7d4e21", ROOT, "lock", "op-20261124-01", "2026-11-24T14:05:00.000Z", "4b8e2f6a1c9d3e7f", DOCS_ARGS
    )
    assert sig == DOCS_SIG
    payload = docs_example_payload()
    assert payload == (
        b'{"v":2,"id":"op-20261124-01","args":' + DOCS_ARGS + b',"auth":{"key":"ops","ts":"2026-11-24T14:05:00.000Z",'
        b'"nonce":"4b8e2f6a1c9d3e7f","sig":"' + DOCS_SIG.encode() + b'"}}'
    )
    # The docs show exactly these bytes: the signing input, the args and the whole request.
    docs = DOCS_MD.read_text(encoding="utf-8")
    assert payload.decode() in docs
    signing_input = "v2\\nheldar/nvr-01\\nlock\\nop-20261124-01\\n2026-11-24T14:05:00.000Z\\n4b8e2f6a1c9d3e7f\\n"
    assert signing_input + DOCS_ARGS.decode() in docs
    assert "v1\\n" not in docs


def test_a_request_signed_for_one_node_is_worthless_on_another_sharing_the_key():
    sig = sign(
        "6f1c0e3b9a7d4e21",
        "heldar/nvr-02",
        "lock",
        "op-20261124-01",
        "2026-11-24T14:05:00.000Z",
        "4b8e2f6a1c9d3e7f",
        DOCS_ARGS,
    )
    assert sig == "c52ed5216847789d8d04dfe74a74821154075461613e759af578dba507ea31db"
    assert sig != DOCS_SIG
    for_nvr01, for_nvr02 = docs_example_payload(), docs_example_payload("heldar/nvr-02")
    assert json.loads(for_nvr02)["auth"]["sig"] == sig
    assert verify(for_nvr01, "lock", b"6f1c0e3b9a7d4e21", root="heldar/nvr-01")
    assert not verify(for_nvr01, "lock", b"6f1c0e3b9a7d4e21", root="heldar/nvr-02")
    assert verify(for_nvr02, "lock", b"6f1c0e3b9a7d4e21", root="heldar/nvr-02")
    # The prefix is part of the root too.
    assert sign("s", "site-b/nvr-01", "status", "r", "t", "nonce-0001", b"") != sign(
        "s", "heldar/nvr-01", "status", "r", "t", "nonce-0001", b""
    )


def test_topic_roots_follow_the_nodes_rules():
    assert topic_root("nvr-01") == "heldar/nvr-01"
    assert topic_root("cam.box_2", "site/a") == "site/a/cam.box_2"
    for node_id in ["", "a/b", "a b", "+", "n" * 65]:
        with pytest.raises(ValueError):
            topic_root(node_id)
    for prefix in ["", "/heldar", "heldar/", "a/+/b", "#", "p" * 129]:
        with pytest.raises(ValueError):
            topic_root("nvr-01", prefix)
    for root in ["nvr-01", "heldar/", "/nvr-01", "heldar/nvr 01", "heldar/+", "", None]:
        with pytest.raises(ValueError):
            sign("s", root, "status", "r", "t", "nonce-0001", b"")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            request_payload("status", root=root, key="ops", secret="s")  # type: ignore[arg-type]


def test_signing_needs_the_root_and_unsigned_requests_do_not():
    with pytest.raises(ValueError, match="topic root"):
        request_payload("status", key="ops", secret="s3cret")
    unsigned = request_payload("status", id="x", root=ROOT)
    assert unsigned == request_payload("status", id="x") == b'{"v":2,"id":"x"}'


def test_the_payload_carries_the_signed_args_bytes_and_verifies():
    args = {"cameras": ["front"], "from": "2026-11-24T13:00:00Z", "to": "2026-11-24T13:10:00Z"}
    payload = request_payload(
        "lock", args, root=ROOT, key="ops", secret="s3cret", id="r-1", ts="2026-11-24T14:00:00.000Z", nonce="nonce-0001"
    )
    assert signed_args(payload) == LOCK_ARGS
    request = json.loads(payload)
    assert request["args"] == args
    assert request["auth"] == {"key": "ops", "ts": "2026-11-24T14:00:00.000Z", "nonce": "nonce-0001", "sig": LOCK_SIG}
    assert verify(payload, "lock", b"s3cret")
    assert not verify(payload, "unlock", b"s3cret")
    assert not verify(payload, "lock", b"other")
    assert not verify(payload, "lock", b"s3cret", root="heldar/nvr-02")


def test_what_is_signed_is_the_spliced_substring_not_a_reserialisation():
    # Non-ASCII, nesting, floats and key order: what Python's default json.dumps writes
    # (spaces after separators) differs from the payload, and only the payload's bytes verify.
    args = {"z": 1, "reason": "Einbruch – Tür", "a": {"b": [1.5, None, True]}}
    payload = request_payload("lock", args, root=ROOT, key="ops", secret="s3cret", nonce="abcdefgh")
    request = json.loads(payload)
    spliced = signed_args(payload)
    assert json.loads(spliced) == args
    auth = request["auth"]
    expected = sign("s3cret", ROOT, "lock", request["id"], auth["ts"], auth["nonce"], spliced)
    assert auth["sig"] == expected
    resigned = json.dumps(request["args"]).encode()
    assert resigned != spliced
    assert sign("s3cret", ROOT, "lock", request["id"], auth["ts"], auth["nonce"], resigned) != auth["sig"]
    # Compact ASCII JSON in the caller's key order, written once.
    assert payload.isascii()
    assert spliced == b'{"z":1,"reason":"Einbruch \\u2013 T\\u00fcr","a":{"b":[1.5,null,true]}}'


def test_absent_args_sign_nothing_for_them():
    payload = request_payload("status", None, root=ROOT, key="ops", secret="s3cret", id="r-2",
                              ts="2026-11-24T14:00:00.000Z", nonce="nonce-0002")
    request = json.loads(payload)
    assert "args" not in request
    assert request["auth"]["sig"] == sign("s3cret", ROOT, "status", "r-2", "2026-11-24T14:00:00.000Z", "nonce-0002", b"")
    assert request["auth"]["sig"] == hmac.new(
        b"s3cret", b"v2\nheldar/nvr-01\nstatus\nr-2\n2026-11-24T14:00:00.000Z\nnonce-0002\n", hashlib.sha256
    ).hexdigest()
    assert verify(payload, "status", b"s3cret")
    # Empty args are present: `{}` is signed.
    empty = json.loads(request_payload("status", {}, root=ROOT, key="ops", secret="s3cret", id="r-2",
                                       ts="2026-11-24T14:00:00.000Z", nonce="nonce-0002"))
    assert empty["args"] == {}
    assert empty["auth"]["sig"] == sign("s3cret", ROOT, "status", "r-2", "2026-11-24T14:00:00.000Z", "nonce-0002", b"{}")


def test_defaults_are_fresh_and_in_the_nodes_format():
    before = datetime.now(timezone.utc)
    one = json.loads(request_payload("status", root=ROOT, key="ops", secret="s3cret"))
    two = json.loads(request_payload("status", root=ROOT, key="ops", secret="s3cret"))
    assert re.fullmatch(r"py-[0-9a-f]+", one["id"]) and len(one["id"]) <= 64
    assert one["id"] != two["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", one["auth"]["nonce"])
    assert one["auth"]["nonce"] != two["auth"]["nonce"]
    ts = one["auth"]["ts"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts)
    when = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert before - timedelta(milliseconds=1) <= when <= datetime.now(timezone.utc)


def test_timestamps_are_written_as_the_node_writes_them():
    assert timestamp(datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc)) == "2026-11-24T14:00:00.000Z"
    assert timestamp(datetime(2026, 11, 24, 14, 16, 24, 123999, tzinfo=timezone.utc)) == "2026-11-24T14:16:24.123Z"
    cet = timezone(timedelta(hours=1))
    assert timestamp(datetime(2026, 11, 24, 15, 0, tzinfo=cet)) == "2026-11-24T14:00:00.000Z"
    with pytest.raises(ValueError):
        timestamp(datetime(2026, 11, 24, 14, 0))
    payload = request_payload("status", root=ROOT, key="ops", secret="s", nonce="nonce-0001",
                              ts=datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc))
    assert json.loads(payload)["auth"]["ts"] == "2026-11-24T14:00:00.000Z"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": ""},
        {"id": "has space"},
        {"id": "a" * 65},
        {"id": "slash/no"},
        {"id": 7},
        {"nonce": "short"},
        {"nonce": "n" * 65},
        {"nonce": "not a nonce"},
        {"nonce": "nonce.0001"},
        {"key": "bad key"},
        {"key": ""},
        {"ts": "yesterday"},
        {"ts": "2026-11-24 14:00:00"},
        {"root": None},
        {"root": "nvr-01"},
        {"root": "heldar/nvr-01/"},
    ],
)
def test_malformed_ids_keys_nonces_and_times_are_refused(kwargs):
    base = {"root": ROOT, "key": "ops", "secret": "s3cret", "id": "r-1", "ts": "2026-11-24T14:00:00.000Z",
            "nonce": "nonce-0001"}
    with pytest.raises(ValueError):
        request_payload("status", {}, **{**base, **kwargs})


def test_other_malformed_requests_are_refused():
    with pytest.raises(ValueError):
        request_payload("sta/tus")
    with pytest.raises(ValueError):
        request_payload("status", ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        request_payload("status", {"x": float("nan")})
    with pytest.raises(ValueError):
        request_payload("status", root=ROOT, key="ops")
    with pytest.raises(ValueError):
        request_payload("status", root=ROOT, secret="s3cret")
    with pytest.raises(ValueError):
        request_payload("status", nonce="nonce-0001")  # a nonce without a key signs nothing
    assert json.loads(request_payload("status", id="a" * 64))["id"] == "a" * 64
    assert json.loads(request_payload("status", root=ROOT, key="k", secret="s", nonce="n" * 8))["auth"]["nonce"] == "n" * 8
    assert json.loads(request_payload("status", root=ROOT, key="k", secret="s", nonce="N_-" + "9" * 61))["auth"]["nonce"]


@pytest.mark.parametrize(
    "name,args",
    [
        ("status", None),
        ("record", {"camera": "front", "mode": "events", "duration_s": 600}),
        ("snapshot", {"camera": "front"}),
        ("lock", {"cameras": ["front"], "from": "2026-11-24T13:00:00Z", "to": "2026-11-24T13:10:00Z", "reason": "x"}),
        ("unlock", {"id": 17}),
        ("export", {"from": "2026-11-24T13:00:00Z", "to": "2026-11-24T13:10:00Z", "destination": "usb", "cut": True}),
        ("backup", {"policy": "nightly"}),
        ("sweep", {}),
        ("reload", None),
    ],
)
def test_payloads_match_the_request_schema(name, args):
    signed = json.loads(request_payload(name, args, root=ROOT, key="ops", secret="s3cret"))
    jsonschema.validate(signed, REQUEST_SCHEMA)
    assert set(signed) == ({"v", "id", "auth"} | ({"args"} if args is not None else set()))
    unsigned = json.loads(request_payload(name, args))
    jsonschema.validate(unsigned, REQUEST_SCHEMA)
    assert "auth" not in unsigned
    assert signed["v"] == unsigned["v"] == 2


def test_the_request_schema_is_v2_and_the_reply_schema_stays_v1():
    assert REQUEST_SCHEMA["properties"]["v"]["const"] == 2
    request = json.loads(docs_example_payload())
    jsonschema.validate(request, REQUEST_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**request, "v": 1}, REQUEST_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"v": 1, "id": "x"}, REQUEST_SCHEMA)
    jsonschema.validate({"v": 1, "id": "x", "ok": True, "result": {}}, REPLY_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"v": 2, "id": "x", "ok": True, "result": {}}, REPLY_SCHEMA)


def test_an_unsigned_request_has_no_auth():
    payload = request_payload("record", {"camera": "front", "mode": "on"}, id="ha-front-on")
    assert payload == b'{"v":2,"id":"ha-front-on","args":{"camera":"front","mode":"on"}}'
    assert request_payload("status", id="x") == b'{"v":2,"id":"x"}'


def test_secrets_are_read_as_the_node_reads_them(tmp_path):
    path = tmp_path / "ops.key"
    path.write_text("  s3cret\n\n", encoding="utf-8")
    assert read_secret(path) == "s3cret"
    assert read_secret(str(path)) == "s3cret"
    # Rust's trim strips Unicode White_Space only: not the separators U+001C..U+001F.
    path.write_text("\x1fs3cret\u3000\t\r\n", encoding="utf-8")
    assert read_secret(path) == "\x1fs3cret"
    path.write_text("geheim-ä", encoding="utf-8")
    secret = read_secret(path)
    assert sign(secret, ROOT, "status", "r", "t", "nonce-0001", b"") == hmac.new(
        "geheim-ä".encode(), b"v2\nheldar/nvr-01\nstatus\nr\nt\nnonce-0001\n", hashlib.sha256
    ).hexdigest()


def test_command_errors_carry_code_and_message():
    error = CommandError("forbidden", 'key "viewer" may not run lock')
    assert (error.code, error.message) == ("forbidden", 'key "viewer" may not run lock')
    assert str(error) == 'forbidden: key "viewer" may not run lock'


def test_the_client_checks_its_key_before_connecting():
    with pytest.raises(ValueError):
        CommandClient("127.0.0.1", 1, "nvr-01", key="ops")
    with pytest.raises(ValueError):
        CommandClient("127.0.0.1", 1, "nvr-01", key="bad key", secret="s")
    with pytest.raises(ValueError):
        CommandClient("127.0.0.1", 1, "nvr/01", key="ops", secret="s")
    with pytest.raises(ValueError):
        CommandClient("127.0.0.1", 1, "nvr-01", topic_prefix="heldar/", key="ops", secret="s")
