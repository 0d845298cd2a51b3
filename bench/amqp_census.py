#!/usr/bin/env python3
"""A counting TCP proxy between AMQP 0-9-1 clients and a broker, for bench/census.sh.

Every client connects to the proxy's port instead of the broker's; the proxy forwards each read as
one write, unchanged, and counts on each connection and in each direction: socket reads and bytes,
frames by type, methods by name, and for acknowledgements how many deliveries (client to broker) or
publishes (publisher confirms, broker to client) each one settled, `multiple` included. Each
connection is named by the process at its other end (found through /proc), so our services and the
MassTransit twin's are told apart.

  amqp_census.py --listen PORT --upstream HOST:PORT --out FILE
SIGUSR1 writes the totals so far to FILE (JSON, replaced atomically); SIGTERM stops the proxy.
"""
import argparse
import asyncio
import json
import os
import signal
import struct
from collections import Counter, defaultdict

FRAME_TYPES = {1: "method", 2: "header", 3: "body", 8: "heartbeat"}
METHODS = {
    (10, 10): "connection.start", (10, 11): "connection.start-ok", (10, 20): "connection.secure",
    (10, 21): "connection.secure-ok", (10, 30): "connection.tune", (10, 31): "connection.tune-ok",
    (10, 40): "connection.open", (10, 41): "connection.open-ok", (10, 50): "connection.close",
    (10, 51): "connection.close-ok", (10, 60): "connection.blocked", (10, 61): "connection.unblocked",
    (20, 10): "channel.open", (20, 11): "channel.open-ok", (20, 20): "channel.flow", (20, 21): "channel.flow-ok",
    (20, 40): "channel.close", (20, 41): "channel.close-ok",
    (40, 10): "exchange.declare", (40, 11): "exchange.declare-ok", (40, 20): "exchange.delete",
    (40, 21): "exchange.delete-ok", (40, 30): "exchange.bind", (40, 31): "exchange.bind-ok",
    (40, 40): "exchange.unbind", (40, 51): "exchange.unbind-ok",
    (50, 10): "queue.declare", (50, 11): "queue.declare-ok", (50, 20): "queue.bind", (50, 21): "queue.bind-ok",
    (50, 30): "queue.purge", (50, 31): "queue.purge-ok", (50, 40): "queue.delete", (50, 41): "queue.delete-ok",
    (50, 50): "queue.unbind", (50, 51): "queue.unbind-ok",
    (60, 10): "basic.qos", (60, 11): "basic.qos-ok", (60, 20): "basic.consume", (60, 21): "basic.consume-ok",
    (60, 30): "basic.cancel", (60, 31): "basic.cancel-ok", (60, 40): "basic.publish", (60, 50): "basic.return",
    (60, 60): "basic.deliver", (60, 70): "basic.get", (60, 71): "basic.get-ok", (60, 72): "basic.get-empty",
    (60, 80): "basic.ack", (60, 90): "basic.reject", (60, 100): "basic.recover-async", (60, 110): "basic.recover",
    (60, 111): "basic.recover-ok", (60, 120): "basic.nack",
    (85, 10): "confirm.select", (85, 11): "confirm.select-ok",
    (90, 10): "tx.select", (90, 11): "tx.select-ok", (90, 20): "tx.commit", (90, 21): "tx.commit-ok",
    (90, 30): "tx.rollback", (90, 31): "tx.rollback-ok",
}
PROTOCOL_HEADER = 8  # "AMQP\0\0\x09\x01", sent by the client before its first frame


def process_of(client_port, proxy_port):
    """The command of the process that owns the client's socket (local port `client_port`)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == client_port and remote_port == proxy_port:
                inode = fields[9]
                break
        if inode:
            break
    if not inode:
        return "unknown"
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                    return " ".join(os.path.basename(a.decode()) for a in argv[:2] if a)
        except OSError:
            continue
    return "unknown"


class Direction:
    """What crossed one connection in one direction."""

    def __init__(self):
        self.reads = 0
        self.bytes = 0
        self.frames = Counter()
        self.methods = Counter()
        self.settled = Counter()  # by method name: deliveries or publishes settled by acks/nacks/rejects
        self.multiple = Counter()  # by method name: frames with the multiple bit set

    def totals(self):
        return {"reads": self.reads, "bytes": self.bytes, "frames": dict(self.frames), "methods": dict(self.methods),
                "settled": dict(self.settled), "multiple": dict(self.multiple)}


class Connection:
    def __init__(self, process):
        self.process = process
        self.c2b = Direction()
        self.b2c = Direction()
        self.delivered = defaultdict(set)   # channel -> delivery tags not yet settled by the client
        self.confirming = set()             # channels in confirm mode
        self.published = defaultdict(int)   # channel -> publishes so far (the confirm sequence)
        self.unconfirmed = defaultdict(set) # channel -> sequence numbers not yet confirmed

    @staticmethod
    def settle(outstanding, tag, multiple):
        if multiple:
            settled = {t for t in outstanding if tag == 0 or t <= tag}
        else:
            settled = {tag} & outstanding
        outstanding -= settled
        return len(settled)

    def method(self, direction, channel, payload):
        class_id, method_id = struct.unpack_from(">HH", payload, 0)
        name = METHODS.get((class_id, method_id), f"{class_id}.{method_id}")
        counts = self.c2b if direction == "c2b" else self.b2c
        counts.methods[name] += 1
        if name == "basic.deliver":
            tag_at = 4 + 1 + payload[4]  # after the consumer tag (a short string)
            self.delivered[channel].add(struct.unpack_from(">Q", payload, tag_at)[0])
        elif name == "confirm.select" and direction == "c2b":
            self.confirming.add(channel)
        elif name == "basic.publish" and channel in self.confirming:
            self.published[channel] += 1
            self.unconfirmed[channel].add(self.published[channel])
        elif name in ("basic.ack", "basic.nack", "basic.reject"):
            tag = struct.unpack_from(">Q", payload, 4)[0]
            multiple = name != "basic.reject" and bool(payload[12] & 1)
            outstanding = self.delivered[channel] if direction == "c2b" else self.unconfirmed[channel]
            counts.settled[name] += self.settle(outstanding, tag, multiple)
            if multiple:
                counts.multiple[name] += 1

    def totals(self):
        return {"process": self.process, "c2b": self.c2b.totals(), "b2c": self.b2c.totals()}


class Parser:
    """Splits one direction's byte stream into frames and hands each method frame to the connection."""

    def __init__(self, connection, direction, header):
        self.connection = connection
        self.direction = direction
        self.counts = connection.c2b if direction == "c2b" else connection.b2c
        self.skip = PROTOCOL_HEADER if header else 0
        self.buffer = bytearray()

    def feed(self, data):
        self.buffer += data
        if self.skip:
            taken = min(self.skip, len(self.buffer))
            del self.buffer[:taken]
            self.skip -= taken
        at = 0
        while len(self.buffer) - at >= 8:
            frame_type, channel, size = struct.unpack_from(">BHI", self.buffer, at)
            if len(self.buffer) - at < 8 + size:
                break
            self.counts.frames[FRAME_TYPES.get(frame_type, str(frame_type))] += 1
            if frame_type == 1:
                self.connection.method(self.direction, channel, bytes(self.buffer[at + 7:at + 7 + size]))
            at += 8 + size  # the header's 7 bytes, the payload, the frame-end octet
        del self.buffer[:at]


connections = []


async def pump(reader, writer, parser, counts):
    try:
        while True:
            data = await reader.read(262144)
            if not data:
                break
            counts.reads += 1
            counts.bytes += len(data)
            parser.feed(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def serve(client_reader, client_writer, upstream, listen_port):
    client_port = client_writer.get_extra_info("peername")[1]
    connection = Connection(process_of(client_port, listen_port))
    connections.append(connection)
    broker_reader, broker_writer = await asyncio.open_connection(*upstream)
    await asyncio.gather(
        pump(client_reader, broker_writer, Parser(connection, "c2b", True), connection.c2b),
        pump(broker_reader, client_writer, Parser(connection, "b2c", False), connection.b2c))


def dump(path):
    temporary = path + ".tmp"
    with open(temporary, "w") as out:
        json.dump({"connections": [c.totals() for c in connections]}, out)
    os.replace(temporary, path)


async def main():
    arguments = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    arguments.add_argument("--listen", type=int, required=True)
    arguments.add_argument("--upstream", required=True)
    arguments.add_argument("--out", required=True)
    options = arguments.parse_args()
    host, port = options.upstream.rsplit(":", 1)
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, (host, int(port)), options.listen), "127.0.0.1", options.listen)
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, dump, options.out)
    loop.add_signal_handler(signal.SIGTERM, lambda: stopped.done() or stopped.set_result(None))
    dump(options.out)
    async with server:
        await stopped


if __name__ == "__main__":
    asyncio.run(main())
