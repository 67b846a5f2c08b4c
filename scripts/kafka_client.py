#!/usr/bin/env python3
"""An independent Kafka client for checks and by-hand use (confluent-kafka, librdkafka 2.16).

Not part of triage: it exists so that tests and people can put messages in and read results out
with a client other than the one triage uses. Debian's kcat (librdkafka 2.0.2) cannot talk to
tansu, this can. Install it once with

    scripts/broker.sh pyclient          # venv in $TRIAGE_CACHE/pyclient, prints its python

then, with PY=$(scripts/broker.sh pyclient):

    $PY scripts/kafka_client.py topics --create triage.in:4 triage.out:4 triage.dlq:1
    echo '{"id":"m-1","text":"thanks, that fixed it"}' | $PY scripts/kafka_client.py produce triage.in
    $PY scripts/kafka_client.py produce --key m-2 --header source=cli triage.in '{"id":"m-2","text":"..."}'
    $PY scripts/kafka_client.py consume triage.out -n 2 --timeout 30
    $PY scripts/kafka_client.py committed GROUP triage.in

`consume` prints one JSON object per record: topic, partition, offset, timestamp_ms, key, value
(parsed as JSON when it is JSON), headers. It assigns partitions itself (no group join, nothing
committed). The broker is $TRIAGE_BROKER (default 127.0.0.1:9092) or --brokers.
"""

import argparse
import json
import os
import sys
import time
import uuid

try:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:  # pragma: no cover
    sys.exit("kafka_client.py: confluent-kafka is missing; run: PY=$(scripts/broker.sh pyclient)")


def _decode(raw):
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_topics(args):
    admin = AdminClient({"bootstrap.servers": args.brokers})
    if args.create:
        new = []
        for spec in args.create:
            name, _, parts = spec.partition(":")
            new.append(NewTopic(name, int(parts or 1), 1))
        for name, fut in admin.create_topics(new, operation_timeout=10).items():
            try:
                fut.result()
                print(f"created {name}", file=sys.stderr)
            except KafkaException as e:
                if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                print(f"exists {name}", file=sys.stderr)
    md = admin.list_topics(timeout=10)
    for name in sorted(md.topics):
        print(f"{name}\t{len(md.topics[name].partitions)}")


def cmd_produce(args):
    p = Producer({"bootstrap.servers": args.brokers, "acks": "all", "enable.idempotence": True})
    headers = [tuple(h.split("=", 1)) for h in args.header]
    values = args.values or ["-"]
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            print(f"{msg.topic()}[{msg.partition()}]@{msg.offset()}", file=sys.stderr)

    count = 0
    for value in values:
        lines = (line.rstrip("\n") for line in sys.stdin) if value == "-" else [value]
        for line in lines:
            if not line:
                continue
            p.produce(args.topic, value=line.encode(), key=args.key.encode() if args.key else None,
                      headers=headers or None, on_delivery=report)
            p.poll(0)
            count += 1
    left = p.flush(30)
    if errors or left:
        sys.exit(f"kafka_client.py: {len(errors)} failed, {left} undelivered of {count}")


def cmd_consume(args):
    c = Consumer({
        "bootstrap.servers": args.brokers,
        # assign() needs a group.id even though this consumer never joins the group.
        "group.id": f"kafka-client-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 10,
    })
    try:
        md = c.list_topics(args.topic, timeout=10)
        parts = sorted(md.topics[args.topic].partitions) if args.topic in md.topics else []
        if not parts:
            sys.exit(f"kafka_client.py: topic {args.topic} does not exist")
        start = {"beginning": -2, "end": -1}[args.start]
        c.assign([TopicPartition(args.topic, p, start) for p in parts])
        seen, deadline = 0, time.monotonic() + args.timeout
        while (args.n == 0 or seen < args.n) and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.2):
                if m.error():
                    print(f"kafka_client.py: {m.error()}", file=sys.stderr)
                    continue
                print(json.dumps({
                    "topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                    "timestamp_ms": m.timestamp()[1],
                    "key": m.key().decode("utf-8", "replace") if m.key() is not None else None,
                    "value": _decode(m.value()),
                    "headers": {k: (v.decode("utf-8", "replace") if v is not None else None)
                                for k, v in (m.headers() or [])},
                }, ensure_ascii=False), flush=True)
                seen += 1
                if args.n and seen >= args.n:
                    break
        if args.n and seen < args.n:
            sys.exit(f"kafka_client.py: only {seen} of {args.n} records within {args.timeout}s")
    finally:
        c.close()


def cmd_committed(args):
    c = Consumer({"bootstrap.servers": args.brokers, "group.id": args.group,
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(args.topic, timeout=10)
        parts = sorted(md.topics[args.topic].partitions)
        for tp in c.committed([TopicPartition(args.topic, p) for p in parts], timeout=10):
            # -1001 (OFFSET_INVALID): nothing committed for this partition.
            print(f"{tp.topic}[{tp.partition}]\t{tp.offset}")
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brokers", default=os.environ.get("TRIAGE_BROKER", "127.0.0.1:9092"))
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("topics", help="list topics (and create some first)")
    t.add_argument("--create", nargs="*", default=[], metavar="NAME[:PARTITIONS]")
    t.set_defaults(func=cmd_topics)

    p = sub.add_parser("produce", help="produce values (arguments, or lines of stdin with '-');"
                                          " options go before TOPIC")
    p.add_argument("topic")
    p.add_argument("values", nargs="*")
    p.add_argument("--key")
    p.add_argument("--header", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_produce)

    c = sub.add_parser("consume", help="print records as JSON lines")
    c.add_argument("topic")
    c.add_argument("-n", type=int, default=0, help="stop after N records (0: until --timeout)")
    c.add_argument("--timeout", type=float, default=10.0, help="seconds to read at most")
    c.add_argument("--from", dest="start", choices=["beginning", "end"], default="beginning")
    c.set_defaults(func=cmd_consume)

    g = sub.add_parser("committed", help="a group's committed offsets for a topic")
    g.add_argument("group")
    g.add_argument("topic")
    g.set_defaults(func=cmd_committed)

    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
