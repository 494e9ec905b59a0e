"""CommandClient against a real mosquitto and a stand-in node that verifies as the node does (v2)."""

import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from heldar_worker import CommandClient, CommandError

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
SECRET = b"fleet-key-secret"

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="needs mosquitto (scripts/test installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mosquitto did not start")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Node:
    """Answers `<root>/cmd/+` as a node of that root would: refuses anything but a v2 request
    signed over its own root."""

    def __init__(self, port: int, root: str) -> None:
        self.root = root
        self.requests = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"node-{root.replace('/', '-')}")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(f"{root}/cmd/+", qos=1)
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, _client, _userdata, message) -> None:
        payload = bytes(message.payload)
        name = message.topic.rsplit("/", 1)[1]
        request = json.loads(payload)
        self.requests.append((message.topic, payload))
        auth = request["auth"]
        args = b""
        if "args" in request:
            args = payload.partition(b'"args":')[2].partition(b',"auth"')[0]
        signed = f"v2\n{self.root}\n{name}\n{request['id']}\n{auth['ts']}\n{auth['nonce']}\n".encode() + args
        good = hmac.compare_digest(hmac.new(SECRET, signed, hashlib.sha256).hexdigest(), auth["sig"])
        if request["v"] != 2:
            reply = {"ok": False, "error": {"code": "bad_request", "message": f"v must be 2, is {request['v']}"}}
        elif not good:
            reply = {"ok": False, "error": {"code": "unauthorized", "message": "bad signature"}}
        else:
            reply = {"ok": True, "result": {"node": self.root, "args": request.get("args")}}
        reply = {"v": 1, "id": request["id"], **reply}
        self.client.publish(f"{self.root}/replies/{request['id']}", json.dumps(reply), qos=1)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_client_signs_for_the_root_it_publishes_to(broker):
    nodes = [Node(broker, "heldar/nvr-01"), Node(broker, "site-b/nvr-02")]
    try:
        with CommandClient("127.0.0.1", broker, "nvr-01", key="ops", secret=SECRET) as nvr01:
            assert nvr01.root == "heldar/nvr-01"
            reply = nvr01.call("lock", {"cameras": ["front"]}, timeout=10)
            assert reply["v"] == 1 and reply["result"] == {"node": "heldar/nvr-01", "args": {"cameras": ["front"]}}
        with CommandClient("127.0.0.1", broker, "nvr-02", "site-b", key="ops", secret=SECRET) as nvr02:
            assert nvr02.call("status", timeout=10)["result"]["node"] == "site-b/nvr-02"
        topic, payload = nodes[0].requests[0]
        assert topic == "heldar/nvr-01/cmd/lock" and json.loads(payload)["v"] == 2
        # nvr-01's request, re-published to nvr-02 (same key): refused there.
        replayed = json.loads(payload)
        listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="listener")
        got = []
        listener.on_message = lambda _c, _u, m: got.append(json.loads(m.payload))
        subscribed = threading.Event()
        listener.on_subscribe = lambda *_: subscribed.set()
        listener.connect("127.0.0.1", broker)
        listener.loop_start()
        try:
            listener.subscribe(f"site-b/nvr-02/replies/{replayed['id']}", qos=1)
            assert subscribed.wait(10)
            listener.publish("site-b/nvr-02/cmd/lock", payload, qos=1)
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            listener.disconnect()
            listener.loop_stop()
        assert got and got[0]["error"]["code"] == "unauthorized"
        # And the client raises the node's refusal as a CommandError.
        with CommandClient("127.0.0.1", broker, "nvr-01", key="ops", secret=b"wrong") as wrong:
            with pytest.raises(CommandError) as refused:
                wrong.call("status", timeout=10)
            assert refused.value.code == "unauthorized"
    finally:
        for node in nodes:
            node.stop()
