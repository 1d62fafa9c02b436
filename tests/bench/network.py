"""The network conditions of the benchmark.

loopback runs everything on 127.0.0.1. wan runs the emulator in a network
namespace behind a veth pair with a netem qdisc on both ends, while the
clients and FUSE mounts stay in the root namespace: `ip netns exec` also
enters a new mount namespace, so a mount made inside it would be invisible
to the rest of the harness.
"""

import ipaddress
import re
import subprocess

ROOT_ADDRESS = "10.213.0.1"
NAMESPACE_ADDRESS = "10.213.0.2"
PREFIX_LENGTH = 24
DEFAULT_NETEM = "delay 10ms rate 1gbit limit 100000"
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
    """A network namespace behind a veth pair with netem on both ends.

    namespace is the name of the namespace, which must not exist yet.
    netem contains the netem parameters for both ends, such as "delay 10ms
    rate 1gbit limit 100000". An empty string adds no qdisc.
    """

    name = "wan"
    address = NAMESPACE_ADDRESS

    def __init__(self, namespace, netem=DEFAULT_NETEM):
        self.namespace = namespace
        self.netem = netem.strip()
        suffix = namespace.rsplit("-", 1)[-1][-8:]
        # Interface names have at most 15 bytes.
        self.root_link = f"csipb{suffix}r"
        self.namespace_link = f"csipb{suffix}n"
        self.rtt_ms = None
        self._created = False

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

    def setup(self):
        """Create the namespace, the veth pair and the qdiscs, then ping
        the namespace once and keep the round-trip times."""
        self._check_free()
        ns = self.namespace
        _run(["ip", "netns", "add", ns])
        self._created = True
        _run(["ip", "link", "add", self.root_link, "type", "veth", "peer",
              "name", self.namespace_link, "netns", ns])

        _run(["ip", "addr", "add", f"{ROOT_ADDRESS}/{PREFIX_LENGTH}", "dev",
              self.root_link])
        _run(["ip", "link", "set", self.root_link, "up"])
        _run(["ip", "-n", ns, "addr", "add",
              f"{NAMESPACE_ADDRESS}/{PREFIX_LENGTH}", "dev",
              self.namespace_link])
        _run(["ip", "-n", ns, "link", "set", self.namespace_link, "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])

        # NOTE: this branch has not run with a working netem qdisc yet,
        # because no kernel with sch_netem was at hand. The round-trip time
        # that the report records shows whether the delay took effect.
        if self.netem:
            parameters = self.netem.split()
            try:
                _run(["tc", "qdisc", "add", "dev", self.root_link, "root",
                      "netem", *parameters])
                _run(["tc", "-n", ns, "qdisc", "add", "dev",
                      self.namespace_link, "root", "netem", *parameters])
            except NetworkError as error:
                raise NetworkError(
                    f"{str(error).rstrip('.')}. The wan condition needs the netem qdisc "
                    f"(kernel option CONFIG_NET_SCH_NETEM); without it, "
                    f"run --network loopback, or --netem '' for the "
                    f"namespace without added delay") from error

        self.rtt_ms = ping(NAMESPACE_ADDRESS)

    def command_prefix(self):
        """Return the argv prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.namespace]

    def teardown(self):
        """Delete the namespace, which destroys the veth pair with it.
        Safe to call more than once."""
        if not self._created:
            return
        self._created = False
        errors = []
        try:
            _run(["ip", "netns", "delete", self.namespace])
        except NetworkError as error:
            errors.append(str(error))
        links = _run(["ip", "-o", "link", "show"])
        if f" {self.root_link}@" in links:
            try:
                _run(["ip", "link", "delete", self.root_link])
            except NetworkError as error:
                errors.append(str(error))
        if errors:
            raise NetworkError("; ".join(errors))

    def describe(self):
        return {"name": self.name, "server_address": self.address,
                "client_address": ROOT_ADDRESS,
                "namespace": self.namespace, "netem": self.netem or None,
                "rtt_ms": self.rtt_ms}
