"""Stand-in for the original Threat Bus RabbitMQ backbone, with pika.

It declares, publishes and consumes exactly as threatbus_rabbitmq does
(tenzir/threatbus, plugins/backbones/threatbus_rabbitmq): a fanout exchange
declared with pika's defaults (not durable, not auto-delete), a queue
"threatbus" + join symbol + suffix with durable/exclusive/auto_delete and the
arguments {"x-queue-mode": "lazy"|"default"} plus "x-max-length" when
max_items > 0, bound with an empty routing key; bodies are the JSON of the
objects as json.dumps writes them, published with no properties, and
consumed with a basic_ack after each message.

Usage (the broker URL comes from THREATBUS_TEST_AMQP_URL):
  pika_compat.py declare  EXCHANGE QUEUE DURABLE EXCLUSIVE AUTO_DELETE LAZY MAX_ITEMS
  pika_compat.py consume  EXCHANGE QUEUE DURABLE EXCLUSIVE AUTO_DELETE LAZY MAX_ITEMS COUNT TIMEOUT
  pika_compat.py publish  EXCHANGE

consume prints "READY" once it consumes, then one line per message: the
body, base64. publish prints one line per body it published, base64.
Booleans are "true"/"false".
"""

import base64
import json
import os
import sys
import time
import uuid

import pika


def params():
    url = os.environ.get("THREATBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    p = pika.URLParameters(url)
    p.client_properties = {"connection_name": "threatbus pika compatibility test"}
    return p


def flag(s):
    return {"true": True, "false": False}[s]


def declare(channel, exchange, queue, durable, exclusive, auto_delete, lazy, max_items):
    # RabbitMQConsumer.on_channel_open / on_exchange_declare_ok /
    # on_queue_declare_ok, in one go.
    channel.exchange_declare(exchange=exchange, exchange_type="fanout")
    queue_mode = "default" if not lazy else "lazy"
    queue_kwargs = {
        "durable": durable,
        "exclusive": exclusive,
        "auto_delete": auto_delete,
        "arguments": {"x-queue-mode": queue_mode},
    }
    if max_items:
        queue_kwargs["arguments"]["x-max-length"] = max_items
    channel.queue_declare(queue=queue, **queue_kwargs)
    channel.queue_bind(exchange=exchange, queue=queue)


def queue_args(argv):
    exchange, queue = argv[0], argv[1]
    durable, exclusive, auto_delete, lazy = (flag(a) for a in argv[2:6])
    return exchange, queue, durable, exclusive, auto_delete, lazy, int(argv[6])


def cmd_declare(argv):
    conn = pika.BlockingConnection(params())
    try:
        declare(conn.channel(), *queue_args(argv))
    finally:
        conn.close()


def cmd_consume(argv):
    args = queue_args(argv)
    count, timeout = int(argv[7]), float(argv[8])
    conn = pika.BlockingConnection(params())
    channel = conn.channel()
    declare(channel, *args)
    got = []

    def on_message(ch, method, _properties, body):
        # As RabbitMQConsumer.__provision: the body is all it reads.
        got.append(body)
        print(base64.b64encode(body).decode(), flush=True)
        ch.basic_ack(delivery_tag=method.delivery_tag)

    channel.basic_consume(args[1], on_message)
    print("READY", flush=True)
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    conn.close()
    if len(got) < count:
        sys.exit("consume: got %d of %d messages" % (len(got), count))


def ts():
    return "2021-01-15T15:29:05.000Z"


def bodies():
    """What the original publishes: stix2's serialize() of an Indicator and a
    Sighting (json.dumps with its default separators), and the
    SnapshotRequest/SnapshotEnvelope encoders' output."""
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--%s" % uuid.uuid4(),
        "created": ts(),
        "modified": ts(),
        "pattern": "[ipv4-addr:value = '6.6.6.6']",
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": ts(),
        "x_threatbus_update": "EDIT",
        "name": "from the original \u00e9",
    }
    sighting = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": "sighting--%s" % uuid.uuid4(),
        "created": ts(),
        "modified": ts(),
        "sighting_of_ref": indicator["id"],
        "x_threatbus_sighting_context": {"noisy": False},
        "x_threatbus_indicator": indicator,
    }
    request = {
        "type": "snapshotrequest",
        "snapshot_type": 1,
        "snapshot_id": str(uuid.uuid4()),
        "snapshot": 3712417,
    }
    envelope = {
        "type": "snapshotenvelope",
        "snapshot_type": 1,
        "snapshot_id": request["snapshot_id"],
        "body": indicator,
    }
    return [json.dumps(o).encode() for o in (indicator, sighting, request, envelope)]


def cmd_publish(argv):
    exchange = argv[0]
    conn = pika.BlockingConnection(params())
    channel = conn.channel()
    # RabbitMQPublisher.__connect and run().
    channel.exchange_declare(exchange=exchange, exchange_type="fanout")
    out = bodies() + [b"this is not JSON"]
    for body in out:
        channel.basic_publish(exchange=exchange, routing_key="", body=body)
        print(base64.b64encode(body).decode(), flush=True)
    conn.close()


if __name__ == "__main__":
    cmds = {"declare": cmd_declare, "consume": cmd_consume, "publish": cmd_publish}
    cmds[sys.argv[1]](sys.argv[2:])
