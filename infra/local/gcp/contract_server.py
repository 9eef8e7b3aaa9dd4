#!/usr/bin/env python3
"""Contract server: stands in for the Google Cloud APIs that have no emulator (IAM,
IAM Credentials, Secret Manager, Cloud Run v2, Resource Manager, Cloud Scheduler,
Service Usage), checking every request against Google's discovery documents.

See README.md next to this file. Standard library only.
"""

import argparse
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from contract.discovery import load_apis  # noqa: E402
from contract.server import API_NAMES, start_servers  # noqa: E402
from contract.apis import run as run_api  # noqa: E402
from contract.world import World  # noqa: E402

DEFAULT_PRINCIPAL = "serviceAccount:control-plane@ledgerlake-platform.iam.gserviceaccount.com"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--discovery", required=True, help="folder of discovery documents")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ports-file", required=True,
                   help="JSON {api: base URL} written (atomically) once all listen")
    p.add_argument("--platform-token", required=True)
    p.add_argument("--platform-principal", default=DEFAULT_PRINCIPAL)
    p.add_argument("--sa-visibility-delay", type=float, default=0.0)
    p.add_argument("--lro-delay", type=float, default=0.0)
    p.add_argument("--enforce-quotas", action="store_true")
    p.add_argument("--quota-scale", type=float, default=1.0)
    p.add_argument("--executor", default=None,
                   help="command run for each Cloud Run task (job args appended)")
    # A value may begin with '-' (a URL-safe token can); argparse would take it for an
    # option, so `--opt VALUE` pairs are joined into `--opt=VALUE` first.
    takes_value = {opt for a in p._actions if a.nargs is None and a.option_strings
                   and not isinstance(a, (argparse._StoreTrueAction, argparse._HelpAction))
                   for opt in a.option_strings}
    joined, i = [], 0
    while i < len(argv):
        if argv[i] in takes_value and i + 1 < len(argv):
            joined.append("%s=%s" % (argv[i], argv[i + 1]))
            i += 2
        else:
            joined.append(argv[i])
            i += 1
    return p.parse_args(joined)


def write_ports_file(path, host, servers):
    urls = {name: "http://%s:%d" % (host, servers[name].server_address[1]) for name in API_NAMES}
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(urls, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)  # readers never see a half-written file
    return urls


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    apis = load_apis(args.discovery, API_NAMES)
    world = World(args.platform_token, args.platform_principal,
                  sa_visibility_delay=args.sa_visibility_delay, lro_delay=args.lro_delay,
                  enforce_quotas=args.enforce_quotas, quota_scale=args.quota_scale,
                  executor=args.executor)
    servers, _ = start_servers(args.host, world, apis)
    urls = write_ports_file(args.ports_file, args.host, servers)
    sys.stderr.write("[contract] listening: %s\n" % ", ".join(
        "%s=%s" % kv for kv in urls.items()))
    sys.stderr.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    # shutdown() must run off the serve_forever threads; the main thread is free.
    for srv in servers.values():
        srv.shutdown()
        srv.server_close()
    run_api.kill_all(world)
    sys.stderr.write("[contract] stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
