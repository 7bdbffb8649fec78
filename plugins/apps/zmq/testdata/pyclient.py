#!/usr/bin/python3
"""A Threat Bus zmq app written the way vast-threatbus, suricata-threatbus and
the zmq app template are, with nothing but Debian's python3-zmq: management
requests on a fresh REQ socket (LINGER 0, 5 s poll timeout), a SUB socket on
the private topic, a plain PUB socket, `topic.endswith(...)` dispatch.

Usage: pyclient.py HOST:PORT INDICATOR.json SIGHTING.json

It subscribes, heartbeats, publishes the two objects and expects each back
byte for byte (the bus echoes to the publisher by default), checks a few
management answers, unsubscribes, and prints OK. Any failure exits non-zero.
"""
import json
import sys
import time

import zmq


def send_manage_message(endpoint, action, timeout=5):
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(f"tcp://{endpoint}")
    if isinstance(action, bytes):
        socket.send(action)
    else:
        socket.send_json(action)
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    reply = None
    if poller.poll(timeout * 1000):
        reply = socket.recv()
    socket.close()
    return reply


def manage(endpoint, action):
    raw = send_manage_message(endpoint, action)
    if raw is None:
        fail(f"no reply to {action!r}")
    return raw, json.loads(raw)


def fail(msg):
    print(f"FAIL {msg}", flush=True)
    sys.exit(1)


def expect(what, got, want):
    if got != want:
        fail(f"{what}: got {got!r}, want {want!r}")


def main():
    endpoint, indicator_file, sighting_file = sys.argv[1:4]
    host = endpoint.rsplit(":", 1)[0]
    with open(indicator_file, "rb") as f:
        indicator = f.read().strip()
    with open(sighting_file, "rb") as f:
        sighting = f.read().strip()

    raw, reply = manage(
        endpoint,
        {"action": "subscribe", "topic": ["stix2/indicator", "stix2/sighting"], "snapshot": 0},
    )
    expect("subscribe status", reply.get("status"), "success")
    p2p = reply["topic"]
    if len(p2p) != 32 or not p2p.isalpha() or not p2p.islower():
        fail(f"private topic {p2p!r}")
    want = (
        f'{{"topic": "{p2p}", "pub_port": {reply["pub_port"]}, '
        f'"sub_port": {reply["sub_port"]}, "status": "success"}}'
    ).encode()
    expect("subscribe reply bytes", raw, want)

    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(f"tcp://{host}:{reply['pub_port']}")
    sub.setsockopt(zmq.SUBSCRIBE, p2p.encode())
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(f"tcp://{host}:{reply['sub_port']}")
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)

    raw, hb = manage(endpoint, {"action": "heartbeat", "topic": p2p})
    expect("heartbeat", raw, b'{"status": "success"}')

    # A plain PUB socket joins late, so the first frames may be lost before
    # the bus's SUB is connected: send until the echo comes back, as a real
    # app would just keep publishing.
    deadline = time.time() + 20
    for topic, payload, suffix in (
        ("stix2/indicator", indicator, "indicator"),
        ("stix2/sighting", sighting, "sighting"),
    ):
        done = False
        while not done:
            if time.time() > deadline:
                fail(f"{suffix} did not come back")
            pub.send(topic.encode() + b" " + payload)
            socks = dict(poller.poll(timeout=200))
            while sub in socks:
                t, msg = sub.recv().decode().split(" ", 1)
                if not t.startswith(p2p):
                    fail(f"frame on a foreign topic {t!r}")
                if t.endswith(suffix) and msg.encode() == payload:
                    obj = json.loads(msg)
                    expect("type", obj["type"], suffix)
                    done = True
                    break
                socks = dict(poller.poll(timeout=0))
        print(f"{suffix} round trip ok", flush=True)

    raw, _ = manage(endpoint, {"action": "heartbeat", "topic": "stix2/indicator"})
    expect("heartbeat with the requested topic", raw, b'{"status": "error"}')
    raw, _ = manage(endpoint, {"action": "frobnicate", "topic": p2p})
    expect("unknown action", raw, b'{"status": "unknown request"}')
    raw, _ = manage(endpoint, b"not json")
    expect("not JSON", raw, b'{"status": "error"}')
    raw, _ = manage(endpoint, {"action": "subscribe", "topic": "stix2/indicator", "snapshot": "FOO"})
    expect("bad snapshot", raw, b'{"status": "error"}')
    raw, _ = manage(endpoint, {"action": "unsubscribe", "topic": p2p})
    expect("unsubscribe", raw, b'{"status": "success"}')
    raw, _ = manage(endpoint, {"action": "heartbeat", "topic": p2p})
    expect("heartbeat after unsubscribe", raw, b'{"status": "error"}')

    sub.close()
    pub.close()
    print(f"OK {p2p}", flush=True)


if __name__ == "__main__":
    main()
