#!/usr/bin/env python3
"""A minimal mDNS responder for mdns_resolver_test, run inside a test's network namespace.

Listens on 0.0.0.0:5353 in the group 224.0.0.251 (joined on --interface) and answers A questions
for --name with --address. Like a real responder it answers a one-shot query (source port not
5353, RFC 6762 6.7) or a QU question unicast to the query's source, from port 5353, repeating
the id and the question. Modes:
  answer   the answer above
  garbage  for every query for --name, malformed packets, a valid answer for another name and a
           valid answer sent from a port other than 5353, none of which may resolve the name
  silent   only reports the queries it sees
--drop N ignores the first N queries for --name (to check retransmission).

Prints "ready port=5353" once listening, then one line per query and per packet it sends.
"""

import argparse
import random
import signal
import socket
import struct
import sys

GROUP = "224.0.0.251"
PORT = 5353


def say(line):
    print(line, flush=True)


def read_name(packet, offset):
    """The dotted name at offset and the offset after it; ValueError on anything odd."""
    labels = []
    end = None
    jumps = 0
    while True:
        if offset >= len(packet):
            raise ValueError("name past the end")
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(packet) or jumps > 16:
                raise ValueError("bad pointer")
            if end is None:
                end = offset + 2
            offset = (length & 0x3F) << 8 | packet[offset + 1]
            jumps += 1
            continue
        if length == 0:
            return ".".join(labels), end if end is not None else offset + 1
        labels.append(packet[offset + 1:offset + 1 + length].decode("utf-8", "replace"))
        offset += 1 + length


def parse_query(packet):
    """(id, [(name, type, qu)]) of a query, or None for anything else."""
    if len(packet) < 12:
        return None
    ident, flags, qdcount = struct.unpack(">HHH", packet[:6])
    if flags & 0x8000:
        return None
    questions = []
    offset = 12
    for _ in range(qdcount):
        name, offset = read_name(packet, offset)
        qtype, qclass = struct.unpack(">HH", packet[offset:offset + 4])
        offset += 4
        questions.append((name, qtype, bool(qclass & 0x8000)))
    return ident, questions


def encode_name(name):
    out = b""
    for label in name.split("."):
        raw = label.encode()
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def answer(ident, name, address):
    """A legacy unicast answer: the question repeated, the record's owner a pointer to it."""
    header = struct.pack(">HHHHHH", ident, 0x8400, 1, 1, 0, 0)
    question = encode_name(name) + struct.pack(">HH", 1, 1)
    record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 10, 4) + socket.inet_aton(address)
    return header + question + record


def garbage(ident, name, address):
    """(kind, packet, from another port?) for every bad or inapplicable answer."""
    good = answer(ident, name, address)
    owner = encode_name(name)
    a_record = struct.pack(">HHIH", 1, 0x8001, 120, 4) + socket.inet_aton(address)
    rng = random.Random(ident)
    return [
        ("random", bytes(rng.randrange(256) for _ in range(64)), False),
        ("truncated", good[:-3], False),
        ("header_only", good[:11], False),
        ("pointer_loop", struct.pack(">HHHHHH", 0, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c" + a_record,
         False),
        ("a_rdlength_3",
         struct.pack(">HHHHHH", 0, 0x8400, 0, 1, 0, 0) + owner +
         struct.pack(">HHIH", 1, 0x8001, 120, 3) + b"\x01\x02\x03", False),
        ("rdlength_past_end",
         struct.pack(">HHHHHH", 0, 0x8400, 0, 1, 0, 0) + owner +
         struct.pack(">HHIH", 1, 0x8001, 120, 200) + b"\x01\x02\x03\x04", False),
        ("other_name", answer(ident, "someone-else.local", address), False),
        ("goodbye",
         struct.pack(">HHHHHH", 0, 0x8400, 0, 1, 0, 0) + owner +
         struct.pack(">HHIH", 1, 0x8001, 0, 4) + socket.inet_aton(address), False),
        ("not_from_5353", good, True),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--interface", required=True, help="IPv4 address to join the group on")
    parser.add_argument("--mode", choices=["answer", "garbage", "silent"], default="answer")
    parser.add_argument("--drop", type=int, default=0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", PORT))
    membership = socket.inet_aton(GROUP) + socket.inet_aton(args.interface)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(args.interface))
    other_port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other_port.bind((args.interface, 0))
    say(f"ready port={PORT}")

    drop = args.drop
    while True:
        packet, (host, port) = sock.recvfrom(9000)
        try:
            parsed = parse_query(packet)
        except (ValueError, struct.error) as e:
            say(f"unparsable packet from {host}:{port}: {e}")
            continue
        if parsed is None:
            continue
        ident, questions = parsed
        listed = ",".join(f"{n}/{t}{'/qu' if qu else ''}" for n, t, qu in questions)
        say(f"query from {host}:{port} id={ident} questions={listed}")
        wanted = [q for q in questions if q[0].lower() == args.name.lower() and q[1] in (1, 255)]
        if not wanted or args.mode == "silent":
            continue
        if drop > 0:
            drop -= 1
            say(f"dropped query from {host}:{port}")
            continue
        unicast = port != PORT or wanted[0][2]
        to = (host, port) if unicast else (GROUP, PORT)
        if args.mode == "answer":
            sock.sendto(answer(ident, wanted[0][0], args.address), to)
            say(f"answered {to[0]}:{to[1]} with A {args.address}")
        else:
            for kind, bad, from_other_port in garbage(ident, wanted[0][0], args.address):
                (other_port if from_other_port else sock).sendto(bad, to)
                say(f"garbage {kind} to {to[0]}:{to[1]}")


if __name__ == "__main__":
    main()
