"""A third-party Sparkplug B edge node (pysparkplug) that the issue 18 acceptance test drives as a subprocess.

riskwatch did not write this edge node's protocol code: births, aliases, seq, bdSeq and the NDEATH will are
pysparkplug's (`EdgeNode`, `Device`, `Client`, its payload classes). This script only wires it to riskwatch's
broker (TLS with the private CA, username/password = the gateway's credentials, client id = the gateway id) and
lets the test steer it. It runs with `.venv-sparkplug/bin/python` (pysparkplug needs paho-mqtt < 2; the project
locks paho-mqtt 2), made by `scripts/bootstrap` from `requirements-sparkplug-edge.lock`.

Beyond pysparkplug's public API it uses three internals of 0.6.1, each where needed and said why: the seq counter
`EdgeNode._seq` (alias-only DDATA and a forced gap take the node's next seq), the counter pysparkplug resets at
connect (a rebirth on request, which 0.6.1 does not offer), and paho's `suppress_exceptions` on the client
pysparkplug wraps (so a callback error is reported, not fatal to paho's thread).

    .venv-sparkplug/bin/python tests/sparkplug_edge/edge_node.py CONFIG.json

CONFIG.json (written by the test; the password stays out of the command line):

    {"host": "127.0.0.1", "port": 8883, "cafile": "...", "username": "gw-sp1", "password": "...",
     "client_id": "gw-sp1", "group_id": "plant-sp", "edge_node_id": "gw-sp1",
     "node_metrics": [{"name": "CAB-T", "alias": 1, "datatype": "DOUBLE", "value": 30.0}],
     "devices": [{"id": "bf1", "metrics": [{"name": "TT-101", "alias": 11, "datatype": "DOUBLE", "value": 60.0}]}]}

Commands, one JSON object a line on stdin, each answered by one line on stdout `{"reply": CMD, "ok": true, ...}`
(or `"ok": false, "error": ...`); what happens on its own (a command from the host, a publish, a connection)
is an event line `{"event": ...}`:

    {"cmd": "connect"}                      connect; pysparkplug publishes NBIRTH (with bdSeq) and each DBIRTH
    {"cmd": "ddata", "device": "bf1", "metrics": [{"name": "TT-101", "value": 61.5, "timestamp": MS}],
     "alias_only": true}                    DDATA; alias_only: each metric as alias + value + timestamp (no name,
                                            no datatype), the form aliases exist for (a metric's "wire_alias"
                                            sends another alias than declared); else pysparkplug's own
                                            `EdgeNode.update_device` (name, alias and datatype)
    {"cmd": "ndata", "metrics": [...]}      NDATA through `EdgeNode.update` (name, alias and datatype)
    {"cmd": "skip_seq", "n": 1}             consume n seq numbers without publishing: the next message has a gap
    {"cmd": "raw", "type": "DDATA", "device": "bf1", "hex": "..."}
                                            publish these bytes as the payload on that Sparkplug topic
    {"cmd": "rebirth_on_ncmd", "enabled": true}
                                            answer an NCMD `Node Control/Rebirth` with NBIRTH + DBIRTHs (the
                                            default, as a compliant edge node does)
    {"cmd": "rebirth"}                      publish NBIRTH + DBIRTHs now, as on a rebirth request
    {"cmd": "deregister", "device": "bf1"}  the device goes away: pysparkplug's `EdgeNode.deregister` publishes its
                                            DDEATH (the node's next seq); later births leave it out
    {"cmd": "register", "device": "bf1"}    the device is back: pysparkplug's `EdgeNode.register` publishes its
                                            DBIRTH with the metrics of the config (their current values)
    {"cmd": "stats"}                        what was received: NCMD count, rebirth requests, and the error log
                                            lines of pysparkplug / paho (e.g. an NCMD it could not decode)
    {"cmd": "disconnect"}                   clean disconnect (pysparkplug publishes NDEATH itself)
    {"cmd": "die"}                          SIGKILL itself: the socket drops, the broker publishes the NDEATH will
    {"cmd": "quit"}                         exit without a word to the broker's session (the test's end)

Events: `ready`, `published` (every message pysparkplug sent: topic, type, seq, timestamp, metrics with name,
alias, datatype, value, timestamp; `raw_hex` for raw bytes), `ncmd` (topic, decoded metrics, whether it asks for a
rebirth), `rebirth` (the births it answered with), `log_error` (pysparkplug's or paho's error log lines, so a
failure inside their threads — an NCMD pysparkplug cannot decode — is not silent).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pysparkplug as psp

REBIRTH_METRIC = "Node Control/Rebirth"
SEQ_LIMIT = 256  # pysparkplug's own cycle (0..255), as Sparkplug 3.0 defines seq


class Out:
    """stdout as JSON lines, from the main thread and paho's network thread alike."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":"), default=str)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


out = Out()


class ErrorsToStdout(logging.Handler):
    """pysparkplug logs paho's errors (e.g. an exception in a message callback) to its logger: report them."""

    def emit(self, record: logging.LogRecord) -> None:
        RECEIVED.errors.append(record.getMessage())
        out({"event": "log_error", "logger": record.name, "message": record.getMessage()})


def metric_json(m: psp.Metric) -> dict[str, Any]:
    return {"name": m.name, "alias": m.alias, "datatype": m.datatype.name, "value": m.value,
            "timestamp": m.timestamp, "is_null": m.is_null}


class RawPayload:
    """Bytes as they are, through pysparkplug's `Client.publish` (which only asks a payload for `encode`)."""

    def __init__(self, raw: bytes):
        self.raw = raw

    def encode(self, *, include_dtypes: bool = False) -> bytes:
        return self.raw


class RecordingClient(psp.Client):
    """pysparkplug's MQTT client, reporting every message it publishes, so the test knows exactly what was sent.

    It also keeps the bdSeq metric of the last NBIRTH: the session's, which a rebirth repeats (pysparkplug's
    EdgeNode already holds the next connection's by then).
    """

    session_bd_seq: psp.Metric | None = None
    dbirths_since_nbirth = 0

    def publish(self, message: psp.Message, *, include_dtypes: bool = False) -> None:
        super().publish(message, include_dtypes=include_dtypes)
        payload = message.payload
        if isinstance(payload, psp.NBirth):
            self.session_bd_seq = next((m for m in payload.metrics if m.name == "bdSeq"), None)
            self.dbirths_since_nbirth = 0
        elif isinstance(payload, psp.DBirth):
            self.dbirths_since_nbirth += 1
        event: dict[str, Any] = {"event": "published", "topic": str(message.topic),
                                 "type": str(message.topic.message_type), "qos": int(message.qos)}
        if isinstance(payload, RawPayload):
            event["raw_hex"] = payload.raw.hex()
        else:
            event["timestamp"] = getattr(payload, "timestamp", None)
            event["seq"] = getattr(payload, "seq", None)
            metrics: Iterable[psp.Metric] = getattr(payload, "metrics", ())
            if isinstance(payload, psp.NDeath):
                metrics = (payload.bd_seq_metric,)
            event["metrics"] = [metric_json(m) for m in metrics]
        out(event)


@dataclass
class Received:
    ncmd: int = 0
    rebirth_requests: int = 0
    errors: list[str] = field(default_factory=list)  # error log lines of pysparkplug / paho


RECEIVED = Received()


class RebirthingEdgeNode(psp.EdgeNode):
    """pysparkplug's EdgeNode plus the one thing 0.6.1 lacks: answering a rebirth request.

    pysparkplug publishes NBIRTH/DBIRTH only from its connect callback. Sparkplug 3.0 asks an edge node that
    receives `Node Control/Rebirth` to publish a new NBIRTH (seq 0, the session's bdSeq) and its DBIRTHs on the
    same connection, without an NDEATH. `rebirth` does that with pysparkplug's payload classes; the seq counter
    it resets is the one pysparkplug's connect callback resets (a name-mangled attribute of EdgeNode).
    """

    def rebirth(self, client: RecordingClient) -> list[dict[str, Any]]:
        bd_seq = client.session_bd_seq
        assert bd_seq is not None, "rebirth before any NBIRTH"
        self._EdgeNode__seq_cycler = itertools.cycle(range(SEQ_LIMIT))
        sent = []
        topic = psp.Topic(message_type=psp.MessageType.NBIRTH, group_id=self.group_id,
                          edge_node_id=self.edge_node_id)
        nbirth = psp.NBirth(timestamp=psp.get_current_timestamp(), seq=self._seq,
                            metrics=(*self.metrics.values(), bd_seq))
        client.publish(psp.Message(topic=topic, payload=nbirth, qos=psp.QoS.AT_MOST_ONCE, retain=False),
                       include_dtypes=True)
        sent.append({"type": "NBIRTH", "seq": nbirth.seq})
        for device in self.devices.values():
            topic = psp.Topic(message_type=psp.MessageType.DBIRTH, group_id=self.group_id,
                              edge_node_id=self.edge_node_id, device_id=device.device_id)
            dbirth = psp.DBirth(timestamp=psp.get_current_timestamp(), seq=self._seq,
                                metrics=tuple(device.metrics.values()))
            client.publish(psp.Message(topic=topic, payload=dbirth, qos=psp.QoS.AT_MOST_ONCE, retain=False),
                           include_dtypes=True)
            sent.append({"type": "DBIRTH", "device": device.device_id, "seq": dbirth.seq})
        return sent


def parse_metric(spec: dict[str, Any], declared: dict[str, psp.Metric] | None = None) -> psp.Metric:
    """A metric from the config (name, alias, datatype, value) or a command (name, value, timestamp)."""
    name = spec["name"]
    base = declared.get(name) if declared is not None else None
    if declared is not None and base is None:
        raise ValueError(f"metric {name!r} was not declared in the birth")
    datatype = psp.DataType[spec["datatype"]] if "datatype" in spec else base.datatype  # type: ignore[union-attr]
    alias = spec.get("alias", base.alias if base is not None else None)
    value = spec.get("value")
    if datatype == psp.DataType.BOOLEAN and value is not None:
        value = bool(value)
    return psp.Metric(timestamp=spec.get("timestamp", psp.get_current_timestamp()), name=name, datatype=datatype,
                      value=value, alias=alias, is_null=bool(spec.get("is_null", False)))


class Driver:
    """The edge node and the commands of the test."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.received = RECEIVED
        self.rebirth_on_ncmd = True
        tls = psp.TLSConfig(ca_certs=config["cafile"])
        self.client = RecordingClient(client_id=config.get("client_id", config["edge_node_id"]),
                                      username=config["username"], password=config["password"],
                                      transport_config=tls)
        # paho 1.x re-raises an exception of a message callback (e.g. pysparkplug failing to decode an NCMD) and
        # its network thread dies with it; suppressed, it is logged instead, and ErrorsToStdout reports it.
        self.client._client.suppress_exceptions = True
        node_metrics = [parse_metric(m) for m in config.get("node_metrics", [])]
        self.node = RebirthingEdgeNode(config["group_id"], config["edge_node_id"], node_metrics, client=self.client,
                                 cmd_callback=self._on_ncmd)
        self.gone: dict[str, psp.Device] = {}  # deregistered devices, as they were, for `register`
        for dev in config.get("devices", []):
            self.node.register(psp.Device(dev["id"], [parse_metric(m) for m in dev["metrics"]]))

    # --- events from pysparkplug (paho's network thread)

    def _on_ncmd(self, node: psp.EdgeNode, message: psp.Message) -> None:
        self.received.ncmd += 1
        metrics = getattr(message.payload, "metrics", ())
        rebirth = any(m.name == REBIRTH_METRIC and m.value is True for m in metrics)
        if rebirth:
            self.received.rebirth_requests += 1
        out({"event": "ncmd", "topic": str(message.topic), "metrics": [metric_json(m) for m in metrics],
             "rebirth": rebirth, "payload_timestamp": getattr(message.payload, "timestamp", None)})
        if rebirth and self.rebirth_on_ncmd:
            out({"event": "rebirth", "sent": self.node.rebirth(self.client)})

    # --- commands

    def cmd_connect(self, _cmd: dict[str, Any]) -> dict[str, Any]:
        # pysparkplug publishes the births from its connect callback on paho's thread: wait until NBIRTH and every
        # DBIRTH are out, so no data of a later command can overtake them.
        self.client.session_bd_seq = None
        self.node.connect(self.config["host"], port=int(self.config["port"]), keepalive=10, blocking=False)
        deadline = time.monotonic() + 15
        while self.client.session_bd_seq is None or self.client.dbirths_since_nbirth < len(self.node.devices):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no CONNACK and births within 15 s; errors: {self.received.errors}")
            time.sleep(0.02)
        return {"bd_seq": self.client.session_bd_seq.value}

    def _device(self, device_id: str) -> psp.Device:
        try:
            return self.node.devices[device_id]
        except KeyError:
            raise ValueError(f"unknown device {device_id!r}") from None

    def cmd_ddata(self, cmd: dict[str, Any]) -> dict[str, Any]:
        device = self._device(cmd["device"])
        metrics = tuple(parse_metric(m, device.metrics) for m in cmd["metrics"])
        if not cmd.get("alias_only", True):
            self.node.update_device(device.device_id, metrics)
            return {}
        device.update(metrics)  # the device's current values, for the next birth
        # "wire_alias": put another alias on the wire than the birth declared (an edge whose alias table went
        # wrong), without changing the declaration its next birth sends
        wire = tuple(psp.Metric(timestamp=m.timestamp, name=None, datatype=m.datatype, value=m.value,
                                alias=spec.get("wire_alias", m.alias), is_null=m.is_null)
                     for m, spec in zip(metrics, cmd["metrics"], strict=True))
        if any(m.alias is None for m in wire):
            raise ValueError("alias_only needs every metric declared with an alias")
        payload = psp.DData(timestamp=psp.get_current_timestamp(), seq=self.node._seq, metrics=wire)
        topic = psp.Topic(message_type=psp.MessageType.DDATA, group_id=self.node.group_id,
                          edge_node_id=self.node.edge_node_id, device_id=device.device_id)
        self.client.publish(psp.Message(topic=topic, payload=payload, qos=psp.QoS.AT_MOST_ONCE, retain=False),
                            include_dtypes=bool(cmd.get("include_dtypes", False)))
        return {"seq": payload.seq, "timestamp": payload.timestamp}

    def cmd_ndata(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.node.update(tuple(parse_metric(m, self.node.metrics) for m in cmd["metrics"]))
        return {}

    def cmd_skip_seq(self, cmd: dict[str, Any]) -> dict[str, Any]:
        skipped = [self.node._seq for _ in range(int(cmd.get("n", 1)))]
        return {"skipped": skipped}

    def cmd_raw(self, cmd: dict[str, Any]) -> dict[str, Any]:
        topic = psp.Topic(message_type=psp.MessageType(cmd.get("type", "DDATA")), group_id=self.node.group_id,
                          edge_node_id=self.node.edge_node_id, device_id=cmd.get("device"))
        self.client.publish(psp.Message(topic=topic, payload=RawPayload(bytes.fromhex(cmd["hex"])),  # type: ignore[arg-type]
                                        qos=psp.QoS.AT_MOST_ONCE, retain=False))
        return {"topic": str(topic)}

    def cmd_rebirth_on_ncmd(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.rebirth_on_ncmd = bool(cmd["enabled"])
        return {}

    def cmd_rebirth(self, _cmd: dict[str, Any]) -> dict[str, Any]:
        return {"sent": self.node.rebirth(self.client)}

    def cmd_deregister(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.gone[cmd["device"]] = self._device(cmd["device"])
        self.node.deregister(cmd["device"])
        return {}

    def cmd_register(self, cmd: dict[str, Any]) -> dict[str, Any]:
        device = self.gone.pop(cmd["device"], None)
        if device is None:
            raise ValueError(f"device {cmd['device']!r} was not deregistered")
        self.node.register(device)
        return {}

    def cmd_stats(self, _cmd: dict[str, Any]) -> dict[str, Any]:
        r = self.received
        return {"ncmd": r.ncmd, "rebirth_requests": r.rebirth_requests, "errors": r.errors}

    def cmd_disconnect(self, _cmd: dict[str, Any]) -> dict[str, Any]:
        self.node.disconnect()
        return {}

    def cmd_die(self, _cmd: dict[str, Any]) -> dict[str, Any]:
        out({"reply": "die", "ok": True})
        os.kill(os.getpid(), signal.SIGKILL)
        return {}  # not reached

    def run(self, lines: Iterable[str]) -> None:
        out({"event": "ready", "pysparkplug": psp.__version__})
        for line in lines:
            if not line.strip():
                continue
            name = "?"
            try:
                cmd = json.loads(line)
                name = cmd["cmd"]
                if name == "quit":
                    out({"reply": "quit", "ok": True})
                    os._exit(0)
                handler = getattr(self, f"cmd_{name}", None)
                if handler is None:
                    raise ValueError(f"unknown command {name!r}")
                out({"reply": name, "ok": True, **handler(cmd)})
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the test as a reply
                out({"reply": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    handler = ErrorsToStdout(level=logging.ERROR)
    logging.getLogger("pysparkplug").addHandler(handler)
    with open(sys.argv[1], encoding="utf-8") as f:
        config = json.load(f)
    driver = Driver(config)
    driver.run(sys.stdin)
    os._exit(0)  # stdin closed: the test is gone; leave without a clean DISCONNECT (the will then fires)


if __name__ == "__main__":
    main()
