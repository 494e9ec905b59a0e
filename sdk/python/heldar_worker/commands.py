"""Commands to a heldar-edge node: signed requests on `P/cmd/<name>`, replies on `P/replies/<id>`.

Protocol v2: a request says `"v": 2` (replies still say `"v": 1`). The signature is what the
node's verifier checks (`src/commands/auth.rs`): lowercase hex HMAC-SHA256 with the key's
secret over

    b"v2\\n" + root + b"\\n" + name + b"\\n" + id + b"\\n" + ts + b"\\n" + nonce + b"\\n" + <args as sent>

where `root` is the node's topic root `P` = `<topic_prefix>/<node_id>` (e.g.
`heldar/nvr-01`, see `topic_root`), so a request signed for one node is refused by every
other node, even one that shares the key; and `<args as sent>` are the exact bytes of the
`args` value in the payload (empty when the payload has no `args`). The node does not
re-serialise them, so `request_payload` writes the args once and splices those very bytes
into the payload.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import ssl
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Union

import paho.mqtt.client as mqtt

__all__ = [
    "ERROR_CODES",
    "CommandClient",
    "CommandError",
    "read_secret",
    "request_payload",
    "sign",
    "timestamp",
    "topic_root",
]

#: The `code` of an error reply.
ERROR_CODES = (
    "bad_request",
    "unknown_command",
    "unauthorized",
    "forbidden",
    "stale",
    "replayed",
    "not_found",
    "busy",
    "failed",
)

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{8,64}")
# The node's rules (`src/protocol/rules.rs`): `node.id` is one topic level of 1..64 of
# [A-Za-z0-9_.-]; `mqtt.topic_prefix` is 1..128 bytes without `+`, `#`, NUL or a leading or
# trailing `/`.
_NODE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)
# As in sdk/schema/command-request.json.
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.ASCII)
# Rust's `str::trim` (Unicode White_Space), which is what the node strips from a secret
# file. Python's `str.strip()` would also strip U+001C..U+001F.
_WHITESPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"

Bytes = Union[bytes, bytearray, memoryview]


class CommandError(Exception):
    """The node refused or failed a command: an error reply's `code` and `message`.

    `code` is one of `ERROR_CODES`; `reply` is the whole reply when there was one.
    """

    def __init__(self, code: str, message: str, reply: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reply = reply


def _check(what: str, value: Any, pattern: "re.Pattern[str]", rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be {rule}")
    return value


def _token(what: str, value: Any) -> str:
    return _check(what, value, _TOKEN, "1..64 of [A-Za-z0-9_-]")


def _nonce(value: Any) -> str:
    return _check("nonce", value, _NONCE, "8..64 of [A-Za-z0-9_-]")


def _prefix_ok(prefix: str) -> bool:
    return (
        bool(prefix)
        and len(prefix.encode("utf-8")) <= 128
        and not prefix.startswith("/")
        and not prefix.endswith("/")
        and not any(c in prefix for c in "+#\0")
    )


def topic_root(node_id: str, topic_prefix: str = "heldar") -> str:
    """The node's topic root `P` = `<topic_prefix>/<node_id>` (e.g. `heldar/nvr-01`): its
    `[mqtt] topic_prefix` and `[node] id` (the hostname when the config has none).

    Raises ValueError when either breaks the node's rules (`node_id`: 1..64 of
    [A-Za-z0-9_.-]; `topic_prefix`: 1..128 bytes, no `+`, `#`, leading or trailing `/`).
    """
    if not isinstance(node_id, str) or not _NODE_ID.fullmatch(node_id):
        raise ValueError(f"node id {node_id!r} must be 1..64 of [A-Za-z0-9_.-]")
    if not isinstance(topic_prefix, str) or not _prefix_ok(topic_prefix):
        raise ValueError(f"topic prefix {topic_prefix!r} must be 1..128 bytes, no '+', '#', leading or trailing '/'")
    return f"{topic_prefix}/{node_id}"


def _root(value: Any) -> str:
    """Checks a topic root `<topic_prefix>/<node_id>` as `topic_root` builds it."""
    if isinstance(value, str) and "/" in value:
        prefix, _, node_id = value.rpartition("/")
        if _NODE_ID.fullmatch(node_id) and _prefix_ok(prefix):
            return value
    raise ValueError(
        f"root {value!r} must be the node's topic root <topic_prefix>/<node_id>, e.g. 'heldar/nvr-01' "
        "(see topic_root)"
    )


def sign(
    secret: Union[bytes, str], root: str, name: str, id: str, ts: str, nonce: str, args_bytes: Union[Bytes, str]
) -> str:
    """Lowercase hex HMAC-SHA256 of a v2 request, as the node computes it.

    `secret` is the key's secret (a `str` is taken as its UTF-8 bytes, unchanged: strip it
    first, as `read_secret` does). `root` is the topic root `P` of the node the request is
    for (`heldar/nvr-01`, see `topic_root`): the signature is worthless on any other node.
    `args_bytes` are the exact bytes of `args` in the payload, or `b""` when the payload has
    none. A `str` is taken as its UTF-8 bytes.

    Raises ValueError on a `root` that is not `<topic_prefix>/<node_id>`.
    """
    _root(root)
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    args = args_bytes.encode("utf-8") if isinstance(args_bytes, str) else bytes(args_bytes)
    head = f"v2\n{root}\n{name}\n{id}\n{ts}\n{nonce}\n".encode("utf-8")
    return hmac.new(key, head + args, hashlib.sha256).hexdigest()


def timestamp(when: Optional[datetime] = None) -> str:
    """`when` (default now) as the node writes times: RFC 3339 UTC with milliseconds,
    e.g. `2026-11-24T14:00:00.000Z`. A naive `datetime` is refused (ValueError)."""
    if when is None:
        seconds, ms = divmod(time.time_ns() // 1_000_000, 1000)
        when = datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=ms * 1000)
    elif when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("timestamp needs an aware datetime (e.g. tzinfo=timezone.utc)")
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def read_secret(path: Union[str, "os.PathLike[str]"]) -> str:
    """The secret in a key's `secret_file`: its UTF-8 text with surrounding whitespace
    stripped, exactly as the node reads it."""
    with open(path, encoding="utf-8") as f:
        return f.read().strip(_WHITESPACE)


def request_payload(
    name: str,
    args: Optional[Dict[str, Any]] = None,
    *,
    root: Optional[str] = None,
    key: Optional[str] = None,
    secret: Optional[Union[bytes, str]] = None,
    id: Optional[str] = None,
    ts: Optional[Union[str, datetime]] = None,
    nonce: Optional[str] = None,
) -> bytes:
    """The payload (protocol v2, `"v": 2`) of a request for command `name`, for
    `<root>/cmd/<name>`.

    `args` is written once as compact JSON and those bytes are both put in the payload and
    signed; `None` leaves `args` out (the signature then covers nothing for it). With `key`
    and `secret` the request is signed for the node whose topic root is `root`
    (`heldar/nvr-01`, see `topic_root`; required when signing: the node refuses a request
    signed for another root): `ts` defaults to now in the node's format (a `datetime` is
    formatted with `timestamp`), `nonce` to 32 random hex digits. Without them it has no
    `auth` (only for commands the node takes unsigned) and `root` is optional (checked when
    given; it is not part of the payload). `id` defaults to `py-<random hex>`; replies come
    on `<root>/replies/<id>`.

    Raises ValueError on a malformed name, id, root, key, nonce or ts, on `args` that is not
    a dict or holds NaN/infinity, on a key without a secret (or the reverse) and on signing
    without `root`.
    """
    _token("command name", name)
    if id is None:
        id = f"py-{secrets.token_hex(8)}"
    _token("id", id)
    if args is None:
        args_json: Optional[str] = None
    elif isinstance(args, dict):
        # The node refuses NaN and infinities; compact, ASCII-only JSON.
        args_json = json.dumps(args, separators=(",", ":"), allow_nan=False)
    else:
        raise ValueError(f"args must be a dict (a JSON object), not {type(args).__name__}")
    if (key is None) != (secret is None):
        raise ValueError("signing needs both key and secret")
    if root is not None:
        _root(root)
    elif key is not None:
        raise ValueError("signing needs the node's topic root: root='<topic_prefix>/<node_id>' (see topic_root)")
    parts = [f'{{"v":2,"id":{json.dumps(id)}']
    if args_json is not None:
        parts.append(f',"args":{args_json}')
    if key is not None and secret is not None and root is not None:
        _token("key", key)
        if ts is None:
            ts = timestamp()
        elif isinstance(ts, datetime):
            ts = timestamp(ts)
        _check("ts", ts, _TS, "an RFC 3339 time such as 2026-11-24T14:00:00.000Z")
        nonce = secrets.token_hex(16) if nonce is None else _nonce(nonce)
        sig = sign(secret, root, name, id, ts, nonce, (args_json or "").encode("utf-8"))
        auth = {"key": key, "ts": ts, "nonce": nonce, "sig": sig}
        parts.append(',"auth":' + json.dumps(auth, separators=(",", ":")))
    elif ts is not None or nonce is not None:
        raise ValueError("ts and nonce are for signed requests: give key and secret too")
    parts.append("}")
    return "".join(parts).encode("utf-8")


class CommandClient:
    """A blocking client that sends commands to one node and waits for their replies.

    Connects on construction and raises ConnectionError when the broker cannot be
    reached, refuses the connection or does not answer within `connect_timeout` seconds.
    With `key` and `secret` (see `read_secret`) every request is signed for this node's
    topic root `<topic_prefix>/<node_id>` (`self.root`). Use it as a context manager, or call
    `close()`. Several threads may call at once.

        with CommandClient("broker.local", 1883, "nvr-01", key="ops", secret=s) as nvr:
            print(nvr.call("status")["result"])
    """

    def __init__(
        self,
        host: str,
        port: int,
        node_id: str,
        topic_prefix: str = "heldar",
        key: Optional[str] = None,
        secret: Optional[Union[bytes, str]] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        *,
        tls_ca: Optional[str] = None,
        connect_timeout: float = 10.0,
    ) -> None:
        if (key is None) != (secret is None):
            raise ValueError("signing needs both key and secret")
        if key is not None:
            _token("key", key)
        self.root = topic_root(node_id, topic_prefix)
        self.key = key
        self._secret = secret
        self._cond = threading.Condition()
        self._connected = False
        self._refused: Optional[str] = None
        self._generation = 0  # counts connections: a wait fails when its connection is gone
        self._subacks: Dict[int, Optional[List[Any]]] = {}  # awaited mid -> reason codes once acked
        self._inboxes: Dict[str, List[List[bytes]]] = {}  # topic -> one list per waiter
        self._closed = False
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"heldar-py-call-{secrets.token_hex(4)}", clean_session=True
        )
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca, cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        try:
            self.client.connect(host, port, keepalive=15)
        except OSError as e:
            raise ConnectionError(f"cannot reach the broker {host}:{port}: {e}") from e
        self.client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._connected or self._refused is not None, timeout=connect_timeout)
            problem = None if self._connected else self._refused
            if not self._connected and problem is None:
                problem = f"no CONNACK from the broker {host}:{port} within {connect_timeout:g} s"
        if problem is not None:
            self.close()
            raise ConnectionError(problem)

    # paho's callbacks, on its network thread.

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        with self._cond:
            if reason_code.is_failure:
                self._refused = f"the broker refused the connection: {reason_code}"
            else:
                self._connected = True
                self._generation += 1
            self._cond.notify_all()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, _reason: Any, _props: Any) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, mid: int, reason_codes: Any, _props: Any) -> None:
        with self._cond:
            if mid in self._subacks:
                self._subacks[mid] = list(reason_codes)
                self._cond.notify_all()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            for box in self._inboxes.get(message.topic, ()):
                box.append(bytes(message.payload))
            self._cond.notify_all()

    # The caller's side. `_cond` guards the state above; paho's own methods are safe to
    # call while holding it (its callbacks take no lock of paho's that they need).

    def _wait(self, ready: Callable[[], bool], deadline: float, generation: int, what: str) -> None:
        """With `_cond` held: waits until `ready()`. TimeoutError past `deadline`,
        ConnectionError when the connection `generation` is lost."""
        while not ready():
            if not self._connected or self._generation != generation:
                raise ConnectionError(f"lost the connection to the broker while waiting for {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {what} in time: is the node online?")
            self._cond.wait(left)

    def _connection(self, deadline: float) -> int:
        """With `_cond` held: waits to be connected, returns the connection's generation."""
        if self._closed:
            raise RuntimeError("this CommandClient is closed")
        while not self._connected:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("not connected to the broker")
            self._cond.wait(left)
        return self._generation

    def _listen(self, topic: str, deadline: float, generation: int) -> List[bytes]:
        """With `_cond` held: collects what arrives on `topic` from now on, subscribed at
        QoS 1 and acknowledged by the broker. Give the list back to `_unlisten`."""
        box: List[bytes] = []
        self._inboxes.setdefault(topic, []).append(box)
        try:
            result, mid = self.client.subscribe(topic, qos=1)
            if result != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"cannot subscribe {topic}: {mqtt.error_string(result)}")
            self._subacks[mid] = None
            try:
                self._wait(lambda: self._subacks[mid] is not None, deadline, generation, f"SUBACK for {topic}")
                codes = self._subacks[mid] or []
            finally:
                del self._subacks[mid]
            if any(getattr(code, "is_failure", False) for code in codes):
                raise ConnectionError(f"the broker refused the subscription to {topic}: {codes}")
        except BaseException:
            self._unlisten(topic, box)
            raise
        return box

    def _unlisten(self, topic: str, box: List[bytes]) -> None:
        """With `_cond` held: stops collecting into `box`; unsubscribes when it was the last."""
        boxes = self._inboxes.get(topic, [])
        if any(b is box for b in boxes):
            boxes[:] = [b for b in boxes if b is not box]
        if not boxes:
            self._inboxes.pop(topic, None)
            if self._connected:
                self.client.unsubscribe(topic)

    def _exchange(self, name: str, args: Optional[Dict[str, Any]], deadline: float) -> Dict[str, Any]:
        id = f"py-{secrets.token_hex(8)}"
        payload = request_payload(name, args, root=self.root, key=self.key, secret=self._secret, id=id)
        reply_topic = f"{self.root}/replies/{id}"
        with self._cond:
            generation = self._connection(deadline)
            box = self._listen(reply_topic, deadline, generation)
            try:
                info = self.client.publish(f"{self.root}/cmd/{name}", payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise ConnectionError(f"cannot publish the request: {mqtt.error_string(info.rc)}")
                self._wait(lambda: bool(box), deadline, generation, f"reply on {reply_topic}")
                raw = box[0]
            finally:
                self._unlisten(reply_topic, box)
        try:
            reply = json.loads(raw)
        except ValueError as e:
            raise ValueError(f"the reply on {reply_topic} is not JSON: {e}") from e
        if not isinstance(reply, dict) or reply.get("id") != id:
            raise ValueError(f"what came on {reply_topic} is not a reply to {id}: {raw[:200]!r}")
        if reply.get("ok") is not True:
            error = reply.get("error")
            error = error if isinstance(error, dict) else {}
            raise CommandError(str(error.get("code", "failed")), str(error.get("message", "")), reply)
        return reply

    def call(self, name: str, args: Optional[Dict[str, Any]] = None, timeout: float = 30) -> Dict[str, Any]:
        """Runs command `name` with `args` (a dict, or None to send none) and returns the
        node's reply, `{"v": 1, "id": …, "ok": True, "result": …}`.

        Subscribes `P/replies/<id>` and waits for the SUBACK, publishes the request at
        QoS 1, then waits for that one reply, all within `timeout` seconds, else
        TimeoutError. An error reply raises CommandError (`.code`, `.message`); a lost
        connection raises ConnectionError (the command may or may not have run).
        """
        return self._exchange(name, args, time.monotonic() + timeout)

    def snapshot(self, camera: str, timeout: float = 30) -> bytes:
        """Runs `snapshot` for `camera` and returns the JPEG the node publishes on
        `P/snapshots/<camera>` (raw bytes, subscribed before the request goes out). Errors
        as for `call`."""
        if not camera or any(c in camera for c in "/+#"):
            raise ValueError(f"camera {camera!r} is not a camera id")
        deadline = time.monotonic() + timeout
        topic = f"{self.root}/snapshots/{camera}"
        with self._cond:
            generation = self._connection(deadline)
            box = self._listen(topic, deadline, generation)
        try:
            reply = self._exchange("snapshot", {"camera": camera}, deadline)
            result = reply.get("result")
            size = result.get("bytes") if isinstance(result, dict) else None
            with self._cond:
                # Another client's snapshot of the same camera may come too: take ours by size.
                self._wait(
                    lambda: any(size is None or len(jpeg) == size for jpeg in box), deadline, generation, f"JPEG on {topic}"
                )
                return next(jpeg for jpeg in box if size is None or len(jpeg) == size)
        finally:
            with self._cond:
                self._unlisten(topic, box)

    def close(self) -> None:
        """Disconnects from the broker; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def __enter__(self) -> "CommandClient":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()
