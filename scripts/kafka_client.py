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
    $PY scripts/kafka_client.py txn-probe          # what the broker does with transactions

`consume` prints one JSON object per record: topic, partition, offset, timestamp_ms, key, value
(parsed as JSON when it is JSON), headers. It assigns partitions itself (no group join, nothing
committed); `--isolation read_uncommitted` shows records of open and aborted transactions too.
`txn-probe` runs the transactional calls exactly-once delivery needs against the broker, on
topics of its own, and prints what each returned and what readers saw (docs/kafka.md,
"Exactly-once"). The broker is $TRIAGE_BROKER (default 127.0.0.1:9092) or --brokers.
"""

import argparse
import json
import os
import socket
import struct
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
        "isolation.level": args.isolation,
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


def _raw_log(brokers, topic, partition):
    """The partition's record batches as stored, control batches included, read with a raw
    Fetch v4 (librdkafka never shows control records): (offset, producer id, "COMMIT" / "ABORT"
    or the values of a data batch)."""
    host, port = brokers.split(",")[0].rsplit(":", 1)

    def s16(v):
        return struct.pack(">h", len(v)) + v

    body = (struct.pack(">hhi", 1, 4, 1) + s16(b"kafka_client.py")
            + struct.pack(">iiiib", -1, 100, 1, 1 << 24, 0)
            + struct.pack(">i", 1) + s16(topic.encode())
            + struct.pack(">i", 1) + struct.pack(">iqi", partition, 0, 1 << 24))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)

        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = sock.recv(n - len(buf))
                if not chunk:
                    raise EOFError("broker closed the connection")
                buf += chunk
            return buf

        resp = read(struct.unpack(">i", read(4))[0])
    i = 8  # correlation id, throttle time
    i += 4  # one topic
    i += 2 + struct.unpack_from(">h", resp, i)[0]
    i += 4  # one partition
    _, err, _, _ = struct.unpack_from(">ihqq", resp, i)
    i += 22
    if err:
        raise RuntimeError(f"fetch error {err}")
    naborted = struct.unpack_from(">i", resp, i)[0]
    i += 4 + 16 * max(naborted, 0)
    size = struct.unpack_from(">i", resp, i)[0]
    i += 4
    recs, j, out = resp[i:i + max(size, 0)], 0, []

    def varint(b, k):
        shift = raw = 0
        while True:
            x = b[k]
            k += 1
            raw |= (x & 0x7F) << shift
            shift += 7
            if not x & 0x80:
                return (raw >> 1) ^ -(raw & 1), k

    while j + 12 <= len(recs):
        base, blen = struct.unpack_from(">qi", recs, j)
        if j + 12 + blen > len(recs):
            break
        b = recs[j:j + 12 + blen]
        attr = struct.unpack_from(">h", b, 21)[0]
        pid = struct.unpack_from(">q", b, 43)[0]
        count = struct.unpack_from(">i", b, 57)[0]
        k, values = 61, []
        for _ in range(count):
            length, k = varint(b, k)
            end = k + length
            k += 1
            _, k = varint(b, k)
            _, k = varint(b, k)
            kl, k = varint(b, k)
            key = b[k:k + kl] if kl >= 0 else None
            k += max(kl, 0)
            vl, k = varint(b, k)
            values.append((key, b[k:k + vl] if vl >= 0 else None))
            k = end
        if attr & 0x20:
            kind = struct.unpack(">hh", values[0][0])[1]
            out.append((base, pid, "COMMIT" if kind == 1 else "ABORT"))
        else:
            out.append((base, pid, [(v or b"").decode("utf-8", "replace") for _, v in values]))
        j += 12 + blen
    return out


def cmd_txn_probe(args):
    """Transactions against this broker, step by step: what exactly-once delivery relies on."""
    sfx = uuid.uuid4().hex[:8]
    src, dst, group, tid = f"probe-in-{sfx}", f"probe-out-{sfx}", f"probe-group-{sfx}", f"probe-{sfx}"
    admin = AdminClient({"bootstrap.servers": args.brokers})
    for fut in admin.create_topics([NewTopic(src, 1, 1), NewTopic(dst, 1, 1)]).values():
        fut.result()
    plain = Producer({"bootstrap.servers": args.brokers})
    for i in range(10):
        plain.produce(src, value=f"in-{i}".encode())
    plain.flush(10)
    results = []

    def step(name, call):
        t0 = time.monotonic()
        try:
            call()
            line = f"OK    {name}"
        except KafkaException as e:
            err = e.args[0]
            line = (f"ERROR {name}: {err.name()} ({err.code()}) {err.str()}; retriable={err.retriable()}"
                    f" fatal={err.fatal()} txn_requires_abort={err.txn_requires_abort()}")
        line += f" [{time.monotonic() - t0:.2f} s]"
        print(line, flush=True)
        results.append(line)

    def read(isolation):
        c = Consumer({"bootstrap.servers": args.brokers, "group.id": f"probe-reader-{uuid.uuid4()}",
                      "enable.auto.commit": False, "isolation.level": isolation, "fetch.wait.max.ms": 10})
        c.assign([TopicPartition(dst, 0, -2)])
        got, deadline = [], time.monotonic() + 3
        while time.monotonic() < deadline:
            for m in c.consume(100, 0.2):
                if not m.error():
                    got.append(m.value().decode())
        c.close()
        return got

    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([src])
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)

    def committed():
        return consumer.committed([TopicPartition(src, 0)], timeout=10)[0].offset

    p = Producer({"bootstrap.servers": args.brokers, "transactional.id": tid, "transaction.timeout.ms": 5000})
    step("InitProducerId (init_transactions) with a transactional.id", lambda: p.init_transactions(20))
    step("transaction 1: begin", p.begin_transaction)
    for i in range(3):
        p.produce(dst, value=f"t1-committed-{i}".encode())
    step("transaction 1: AddOffsetsToTxn + TxnOffsetCommit (offset 3)",
         lambda: p.send_offsets_to_transaction([TopicPartition(src, 0, 3)], consumer.consumer_group_metadata(), 20))
    print(f"      group offset before EndTxn: {committed()}")
    step("transaction 1: EndTxn(commit)", lambda: p.commit_transaction(20))
    print(f"      group offset after the commit: {committed()}")
    step("transaction 2: begin", p.begin_transaction)
    for i in range(3):
        p.produce(dst, value=f"t2-aborted-{i}".encode())
    p.flush(10)
    step("transaction 2: AddOffsetsToTxn + TxnOffsetCommit (offset 6)",
         lambda: p.send_offsets_to_transaction([TopicPartition(src, 0, 6)], consumer.consumer_group_metadata(), 20))
    step("transaction 2: EndTxn(abort)", lambda: p.abort_transaction(20))
    print(f"      group offset after the abort (3 expected): {committed()}")
    step("transaction 3: begin", p.begin_transaction)
    p.produce(dst, value=b"t3-open")
    p.flush(10)
    print("      transaction 3 left open; transaction.timeout.ms=5000; waiting 8 s")
    time.sleep(8)
    print(f"      read_uncommitted sees: {read('read_uncommitted')}")
    print(f"      read_committed sees:   {read('read_committed')}")
    fence = Producer({"bootstrap.servers": args.brokers, "transactional.id": tid})
    step("a second producer with the same transactional.id: init_transactions (fences the first)",
         lambda: fence.init_transactions(20))
    step("the fenced producer: EndTxn(commit) of transaction 3", lambda: p.commit_transaction(5))
    print(f"      read_committed sees after the fence: {read('read_committed')}")
    print("      the log as stored (raw Fetch v4; librdkafka hides control records):")
    for base, pid, what in _raw_log(args.brokers, dst, 0):
        print(f"        offset {base:>3} producer {pid:>3}: {what}")
    consumer.close()


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
    c.add_argument("--isolation", choices=["read_committed", "read_uncommitted"],
                   default="read_committed", help="librdkafka's default is read_committed")
    c.set_defaults(func=cmd_consume)

    g = sub.add_parser("committed", help="a group's committed offsets for a topic")
    g.add_argument("group")
    g.add_argument("topic")
    g.set_defaults(func=cmd_committed)

    x = sub.add_parser("txn-probe", help="try the transactional calls and print what happened")
    x.set_defaults(func=cmd_txn_probe)

    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
