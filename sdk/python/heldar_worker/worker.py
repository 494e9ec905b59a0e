"""A worker's MQTT side: status with a last will, frames in, detections out."""

from __future__ import annotations

import json
import logging
import queue
import re
import ssl
import threading
from typing import Callable, List, Optional

import paho.mqtt.client as mqtt

from .frame import Detection, Frame, detections_message, parse_frame

log = logging.getLogger("heldar_worker")
_WORKER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Handler = Callable[[Frame], List[Detection]]


class Worker:
    """Takes frames from one node and answers each with the handler's detections.

    Frames go through a queue of one: a slow handler skips frames instead of lagging
    behind the cameras.
    """

    def __init__(
        self,
        worker_id: str,
        handler: Handler,
        *,
        node_id: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        topic_prefix: str = "heldar",
        username: Optional[str] = None,
        password: Optional[str] = None,
        tls_ca: Optional[str] = None,
        share_group: Optional[str] = None,
        labels: Optional[List[str]] = None,
        max_fps: Optional[float] = None,
        model: Optional[str] = None,
    ) -> None:
        if not _WORKER_ID.match(worker_id):
            raise ValueError("worker_id must be 1..64 of [A-Za-z0-9_-]")
        self.worker_id = worker_id
        self.handler = handler
        self.host, self.port = host, port
        self.root = f"{topic_prefix}/{node_id}"
        self.share_group = share_group
        self._frames: "queue.Queue[Frame]" = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.answered = 0
        self.skipped = 0
        status = {"v": 1, "state": "online"}
        if labels:
            status["labels"] = labels
        if max_fps:
            status["max_fps"] = max_fps
        if model:
            status["model"] = model
        self._online = json.dumps(status)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"heldar-worker-{worker_id}")
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca, cert_reqs=ssl.CERT_REQUIRED)
        # The will goes with the CONNECT: set it before connecting.
        self.client.will_set(self._status_topic, json.dumps({"v": 1, "state": "offline"}), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    @property
    def _status_topic(self) -> str:
        return f"{self.root}/workers/{self.worker_id}/status"

    def _on_connect(self, client: mqtt.Client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.error("connection refused: %s", reason_code)
            return
        frames = f"{self.root}/frames/+"
        if self.share_group:
            frames = f"$share/{self.share_group}/{frames}"
        client.subscribe([(frames, 0), (f"{self.root}/errors", 0)])
        client.publish(self._status_topic, self._online, qos=1, retain=True)
        log.info("worker %s online for %s", self.worker_id, self.root)

    def _on_message(self, _client: mqtt.Client, _userdata, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/errors"):
            try:
                error = json.loads(message.payload)
            except ValueError:
                return
            if error.get("worker") == self.worker_id:
                log.warning("node refused our message on %s: %s", error.get("topic"), error.get("error"))
            return
        try:
            frame = parse_frame(message.payload)
        except ValueError as e:
            log.warning("bad frame on %s: %s", message.topic, e)
            return
        try:
            self._frames.put_nowait(frame)
        except queue.Full:
            # Newest frame wins.
            try:
                self._frames.get_nowait()
                self.skipped += 1
            except queue.Empty:
                pass
            self._frames.put_nowait(frame)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._frames.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                detections = self.handler(frame)
            except Exception:  # a bad frame must not stop the worker
                log.exception("handler failed on %s seq %s", frame.camera, frame.seq)
                continue
            message = detections_message(self.worker_id, frame, list(detections))
            self.client.publish(f"{self.root}/detections/{frame.camera}", json.dumps(message), qos=1)
            self.answered += 1

    def start(self) -> None:
        """Connects and starts taking frames in the background."""
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._work, name=f"worker-{self.worker_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Announces offline (retained), then disconnects."""
        self.request_stop()
        if self._thread:
            self._thread.join(timeout=5)
        info = self.client.publish(self._status_topic, json.dumps({"v": 1, "state": "offline"}), qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=5)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()

    def request_stop(self) -> None:
        """Makes `run_forever` return (safe from a signal handler)."""
        self._stop.set()

    def run_forever(self) -> None:
        """`start()`, then blocks until interrupted; stops cleanly on Ctrl-C."""
        self.start()
        try:
            self._stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
