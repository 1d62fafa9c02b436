"""The network conditions of the benchmark.

loopback runs everything on 127.0.0.1. wan runs the emulator in a network
namespace behind a delay line of 20 ms round trip at 1 Gbit/s, while the
clients and FUSE mounts stay in the root namespace: `ip netns exec` also
enters a new mount namespace, so a mount made inside it would be invisible
to the rest of the harness.
"""

import ipaddress
import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

ROOT_ADDRESS = "10.213.0.1"
NAMESPACE_ADDRESS = "10.213.0.2"
PREFIX_LENGTH = 24
# The link of the wan condition: 10 ms each way, so a 20 ms round trip,
# at 1 Gbit/s, with a queue of about 1.7 times its bandwidth-delay product.
DEFAULT_DELAY_MS = 10.0
DEFAULT_RATE_MBIT = 1000.0
DEFAULT_LIMIT_BYTES = 4 << 20
DELAY_LINE = Path(__file__).resolve().parent / "delayline.py"
PING_COUNT = 5
COMMAND_TIMEOUT = 30

_RTT = re.compile(r"= ([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+) ms")


class NetworkError(Exception):
    """Setting up or checking a network condition failed."""


def _run(argv):
    """Run one ip, tc or ping command and return its stdout; raise
    NetworkError with its stderr when it fails."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NetworkError(f"{' '.join(argv)} failed: {error}") from error
    if result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} failed with status "
                           f"{result.returncode}: {result.stderr.strip()}")
    return result.stdout


def ping(address):
    """Return (min, avg, max) round-trip time in ms of PING_COUNT pings."""
    output = _run(["ping", "-c", str(PING_COUNT), "-i", "0.2", "-q",
                   address])
    match = _RTT.search(output)
    if match is None:
        raise NetworkError(f"ping {address} printed no round-trip times: "
                           f"{output.strip()}")
    return tuple(float(match.group(i)) for i in (1, 2, 3))


class Loopback:
    """Everything on 127.0.0.1."""

    name = "loopback"
    address = "127.0.0.1"

    def __init__(self):
        self.rtt_ms = None

    def setup(self):
        self.rtt_ms = ping(self.address)

    def command_prefix(self):
        return []

    def teardown(self):
        pass

    def describe(self):
        return {"name": self.name, "server_address": self.address,
                "netem": None, "rtt_ms": self.rtt_ms}


class Wan:
    """A network namespace behind a delay line, tests/bench/delayline.py.

    namespace is the name of the namespace, which must not exist yet.
    delay_ms is the one-way delay and rate_mbit the rate of each direction
    in Mbit/s (0 for none). The delay line forwards between two tun
    devices, because the kernel this benchmark was written on (6.18) has no
    netem qdisc.
    """

    name = "wan"
    address = NAMESPACE_ADDRESS

    def __init__(self, namespace, delay_ms=DEFAULT_DELAY_MS,
                 rate_mbit=DEFAULT_RATE_MBIT, limit_bytes=DEFAULT_LIMIT_BYTES):
        self.namespace = namespace
        self.delay_ms = delay_ms
        self.rate_mbit = rate_mbit
        self.limit_bytes = limit_bytes
        suffix = namespace.rsplit("-", 1)[-1][-8:]
        # Interface names have at most 15 bytes.
        self.root_link = f"csipb{suffix}r"
        self.namespace_link = f"csipb{suffix}n"
        self.rtt_ms = None
        self.counters = None
        self.cpu_seconds = None
        self.delay_line_error = ""
        self._created = False
        self._delay_line = None

    def _check_free(self):
        existing = _run(["ip", "netns", "list"]).split()
        if self.namespace in existing:
            raise NetworkError(f"network namespace {self.namespace} exists "
                               f"already: delete it with ip netns delete "
                               f"{self.namespace}")
        network = ipaddress.ip_network(f"{ROOT_ADDRESS}/{PREFIX_LENGTH}",
                                       strict=False)
        routes = _run(["ip", "-4", "route", "show", "to", "match",
                       str(network.network_address)])
        for line in routes.splitlines():
            if line.startswith(str(network)):
                raise NetworkError(f"{network} is routed already ({line}): "
                                   f"a stale benchmark namespace or another "
                                   f"network uses it")

    def _start_delay_line(self):
        """Start the delay line and wait until it has made both tun
        devices."""
        argv = [sys.executable, str(DELAY_LINE), "--root-link",
                self.root_link, "--namespace", self.namespace,
                "--namespace-link", self.namespace_link,
                "--delay-ms", str(self.delay_ms),
                "--rate-mbit", str(self.rate_mbit),
                "--limit-bytes", str(self.limit_bytes)]
        self._delay_line = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self._delay_line.stdout], [], [],
                                    COMMAND_TIMEOUT)
        line = self._delay_line.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self._stop_delay_line()
            raise NetworkError(f"the delay line did not start: "
                               f"{self.delay_line_error or 'no output'}")

    def _stop_delay_line(self):
        """Stop the delay line, which removes its tun devices, and keep its
        counters and CPU time."""
        process = self._delay_line
        if process is None:
            return
        self._delay_line = None
        self.cpu_seconds = _cpu_seconds(process.pid)
        process.terminate()
        try:
            output, errors = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            output, errors = process.communicate()
        self.delay_line_error = errors.strip()
        for line in output.splitlines():
            if line.startswith("{"):
                self.counters = json.loads(line)

    def setup(self):
        """Create the namespace and the delay line, assign the addresses,
        then ping the namespace and keep the round-trip times."""
        self._check_free()
        ns = self.namespace
        _run(["ip", "netns", "add", ns])
        self._created = True
        self._start_delay_line()
        _run(["ip", "addr", "add", f"{ROOT_ADDRESS}/{PREFIX_LENGTH}", "dev",
              self.root_link])
        _run(["ip", "link", "set", self.root_link, "up"])
        _run(["ip", "-n", ns, "addr", "add",
              f"{NAMESPACE_ADDRESS}/{PREFIX_LENGTH}", "dev",
              self.namespace_link])
        _run(["ip", "-n", ns, "link", "set", self.namespace_link, "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self.rtt_ms = ping(NAMESPACE_ADDRESS)

    def command_prefix(self):
        """Return the argv prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.namespace]

    def teardown(self):
        """Stop the delay line and delete the namespace. Safe to call more
        than once."""
        self._stop_delay_line()
        if not self._created:
            return
        self._created = False
        _run(["ip", "netns", "delete", self.namespace])

    def describe(self):
        return {"name": self.name, "server_address": self.address,
                "client_address": ROOT_ADDRESS,
                "namespace": self.namespace,
                "link": {"delay_ms": self.delay_ms,
                         "rate_mbit": self.rate_mbit,
                         "limit_bytes": self.limit_bytes},
                "delay_line": {"counters": self.counters,
                               "cpu_seconds": self.cpu_seconds},
                "rtt_ms": self.rtt_ms}


def _cpu_seconds(pid):
    """Return the user plus system CPU seconds of process pid so far, or
    None when it has gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as source:
            fields = source.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
