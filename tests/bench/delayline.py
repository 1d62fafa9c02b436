"""A wide-area link between two tun devices, for kernels without netem.

Usage (as root): delayline.py --root-link NAME --namespace NS
                 --namespace-link NAME [--delay-ms MS] [--rate-mbit MBIT]
                 [--limit-bytes BYTES]

Creates the tun device --root-link in the caller's network namespace and
--namespace-link in the existing namespace NS (/run/netns/NS), prints
"ready" on stdout, then forwards every IP packet that one device sends to
the other. The caller assigns the addresses and sets both links up. Each
direction is a FIFO link like netem's "delay MS rate MBIT": a packet is
sent at the rate after the packets before it, and arrives --delay-ms after
it has been sent. A packet that would make a direction's queue exceed
--limit-bytes is dropped. The devices exist only while this process runs.
On SIGTERM or SIGINT it prints one JSON line of counters on stdout and
exits 0; it exits 1 with a message on stderr when a device cannot be made.

The devices take the kernel's TCP segmentation offload, so most packets of
a bulk transfer arrive here as segments of up to 64 KiB with a virtio-net
header, which is what lets a Python loop keep up with 1 Gbit/s.
"""

import argparse
import collections
import ctypes
import fcntl
import json
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
CLONE_NEWNET = 0x40000000
# The virtio-net header that IFF_VNET_HDR puts before each packet, which is
# passed on unchanged and does not count as bytes on the link.
VNET_HEADER_SIZE = 10
# A TSO segment is at most 64 KiB of IP packet.
READ_SIZE = VNET_HEADER_SIZE + 65536
# Packets read from one device before the loop looks at the other one.
READ_BATCH = 64


class Stop(Exception):
    """SIGTERM or SIGINT arrived."""


class Direction:
    """One direction of the link: the packets in flight towards the device
    out_fd, each with the monotonic time at which it arrives."""

    def __init__(self, out_fd, delay, rate, limit):
        self.out_fd = out_fd
        self.delay = delay
        self.seconds_per_byte = 8 / rate if rate else 0.0
        self.limit = limit
        self.queue = collections.deque()
        self.queued_bytes = 0
        self.sent_until = 0.0
        self.packets = 0
        self.bytes = 0
        self.drops = 0

    def accept(self, packet, now):
        size = len(packet) - VNET_HEADER_SIZE
        if self.queued_bytes + size > self.limit:
            self.drops += 1
            return
        start = max(now, self.sent_until)
        self.sent_until = start + size * self.seconds_per_byte
        self.queue.append((self.sent_until + self.delay, size, packet))
        self.queued_bytes += size

    def deliver(self, now):
        """Write the packets that have arrived by now to out_fd."""
        while self.queue and self.queue[0][0] <= now:
            _, size, packet = self.queue.popleft()
            self.queued_bytes -= size
            self.packets += 1
            self.bytes += size
            try:
                os.write(self.out_fd, packet)
            except OSError:
                # The receiving stack rejected it, as a full or down link
                # would lose it.
                self.drops += 1

    def next_arrival(self):
        return self.queue[0][0] if self.queue else None

    def counters(self):
        return {"packets": self.packets, "bytes": self.bytes,
                "drops": self.drops}


def open_tun(name):
    """Create the tun device name in the current network namespace and
    return its file descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        request = struct.pack("16sH", name.encode(),
                              IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)
        fcntl.ioctl(fd, TUNSETIFF, request)
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    except OSError:
        os.close(fd)
        raise
    return fd


def enter_namespace(name):
    """Move this process into the network namespace /run/netns/name."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns to {name}: {os.strerror(error)}")
    finally:
        os.close(fd)


def read_packets(fd, direction):
    for _ in range(READ_BATCH):
        try:
            packet = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        direction.accept(packet, time.monotonic())


def forward(root_fd, namespace_fd, delay, rate, limit):
    """Forward packets between the two devices until Stop, then return the
    counters of both directions."""
    towards_namespace = Direction(namespace_fd, delay, rate, limit)
    towards_root = Direction(root_fd, delay, rate, limit)
    sources = {root_fd: towards_namespace, namespace_fd: towards_root}
    try:
        while True:
            arrivals = [a for a in (towards_namespace.next_arrival(),
                                    towards_root.next_arrival())
                        if a is not None]
            timeout = None
            if arrivals:
                timeout = max(0.0, min(arrivals) - time.monotonic())
            # select takes microseconds, where epoll would round the
            # timeout up to whole milliseconds.
            readable, _, _ = select.select(list(sources), [], [], timeout)
            for fd in readable:
                read_packets(fd, sources[fd])
            now = time.monotonic()
            towards_namespace.deliver(now)
            towards_root.deliver(now)
    except Stop:
        pass
    return {"to_namespace": towards_namespace.counters(),
            "to_root": towards_root.counters()}


def _stop(signum, frame):
    raise Stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root-link", required=True, metavar="NAME")
    parser.add_argument("--namespace", required=True, metavar="NS")
    parser.add_argument("--namespace-link", required=True, metavar="NAME")
    parser.add_argument("--delay-ms", type=float, default=10.0,
                        metavar="MS", help="one-way delay (default 10)")
    parser.add_argument("--rate-mbit", type=float, default=1000.0,
                        metavar="MBIT",
                        help="rate of each direction in Mbit/s, 0 for no "
                             "limit (default 1000)")
    parser.add_argument("--limit-bytes", type=int, default=4 << 20,
                        metavar="BYTES",
                        help="queue limit of each direction (default "
                             "4 MiB)")
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.rate_mbit < 0 or args.limit_bytes <= 0:
        parser.error("--delay-ms and --rate-mbit must not be negative and "
                     "--limit-bytes must be positive")

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        root_fd = open_tun(args.root_link)
        enter_namespace(args.namespace)
        namespace_fd = open_tun(args.namespace_link)
    except OSError as error:
        print(f"delayline: creating the tun devices {args.root_link} and "
              f"{args.namespace_link} failed: {error}", file=sys.stderr)
        return 1
    except Stop:
        return 0
    print("ready", flush=True)
    counters = forward(root_fd, namespace_fd, args.delay_ms / 1000,
                       args.rate_mbit * 1e6, args.limit_bytes)
    print(json.dumps(counters), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
