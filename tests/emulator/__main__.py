"""Run the emulator until SIGTERM or SIGINT.

Usage, from the tests/ directory or with PYTHONPATH=tests:
    /usr/bin/python3 -m emulator --dir DIR [--url-lifetime S] [--rate-limit N]
        [--manifest PATH] [--bind-address IP] [--plain-listing]
"""

import argparse
import ipaddress
import signal
import sys
import threading

from . import Emulator


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m emulator",
        description="Run the CSIP API emulator and its nginx object store.")
    parser.add_argument("--dir", required=True,
                        help="work directory for the fixture, certificates, "
                             "logs and state.json")
    parser.add_argument("--url-lifetime", type=int, default=300,
                        metavar="SECONDS",
                        help="lifetime of download URLs in seconds "
                             "(default 300)")
    parser.add_argument("--rate-limit", type=int, default=20, metavar="N",
                        help="calls per second allowed for each action, "
                             "0 for no limit (default 20)")
    parser.add_argument("--manifest", metavar="PATH",
                        help="serve this prebuilt manifest.json, with its "
                             "objects in the objects/ directory next to it, "
                             "instead of building the test fixture in DIR")
    parser.add_argument("--bind-address", default="127.0.0.1", metavar="IP",
                        help="IPv4 address the API server and nginx listen "
                             "on; the server certificate names it "
                             "(default 127.0.0.1)")
    parser.add_argument("--plain-listing", action="store_true",
                        help="also serve the objects without signed links "
                             "under /plain/, with directory listings")
    args = parser.parse_args(argv)
    try:
        ipaddress.IPv4Address(args.bind_address)
    except ValueError:
        parser.error(f"--bind-address {args.bind_address!r} is not an IPv4 "
                     f"address")

    stop = threading.Event()

    def request_stop(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    emulator = Emulator(args.dir, url_lifetime=args.url_lifetime,
                        rate_limit=args.rate_limit, manifest=args.manifest,
                        address=args.bind_address,
                        plain_listing=args.plain_listing)
    try:
        emulator.start()
    except (OSError, RuntimeError) as error:
        print(f"emulator: start failed: {error}", file=sys.stderr)
        return 1
    try:
        print(f"emulator ready: {emulator.state_file}", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
