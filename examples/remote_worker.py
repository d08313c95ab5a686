#!/usr/bin/env python3
"""A remote worker for luaswarm, with Python's standard library only.

It claims attempts of the `remote` agents of a `swarm serve` (POST /v1/work/claim), reads each
attempt's prompt and input refs, reports progress, and posts the result, all with the token the
claim returned. Start the host, then the worker:

    swarm serve examples/serve/remote.lua --listen 127.0.0.1:8080
    python3 examples/remote_worker.py --api http://127.0.0.1:8080 \
        --token-file examples/serve/.swarm/operator.token --queue words

`--api unix:PATH` talks to a Unix socket instead. The token may also come from SWARM_TOKEN (a
token minted with `swarm token mint --role worker`). The work itself is `work()` below: it counts
the words of `input.text`; replace it with yours.
"""

import argparse
import http.client
import json
import os
import socket
import sys
import time


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Api:
    """The host's API at `address` (http://HOST:PORT or unix:PATH)."""

    def __init__(self, address, timeout=70):
        self.address = address
        self.timeout = timeout

    def connection(self):
        if self.address.startswith("unix:"):
            return UnixConnection(self.address[len("unix:"):], self.timeout)
        rest = self.address.split("://", 1)[-1].rstrip("/")
        host, _, port = rest.rpartition(":")
        return http.client.HTTPConnection(host, int(port), timeout=self.timeout)

    def call(self, method, path, token, body=None):
        """(status, decoded JSON body or None)."""
        conn = self.connection()
        headers = {"Authorization": "Bearer " + token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        return response.status, (json.loads(raw) if raw else None)


def work(api, claim):
    """The attempt's value: the words of `input.text` counted, with progress on the way."""
    task, token = claim["task_id"], claim["token"]
    api.call("POST", f"/v1/tasks/{task}/events", token,
             [{"type": "progress", "stage": "counting", "note": f"attempt {claim['attempt']}"}])
    # What input_inject handed the attempt: stored outputs of earlier steps, fetched by ref.
    earlier = []
    for ref in claim.get("input_refs") or []:
        status, body = api.call("GET", f"/v1/outputs/{ref}", token)
        if status == 200:
            earlier.append(body)
    value = claim.get("input")
    text = value.get("text", "") if isinstance(value, dict) else str(value)
    words = text.split()
    return {"words": len(words), "longest": max(words, key=len) if words else None, "earlier": len(earlier)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="http://HOST:PORT or unix:PATH")
    parser.add_argument("--queue", action="append", required=True, help="a queue to take from (repeatable)")
    parser.add_argument("--token-file", help="a file holding the token (else SWARM_TOKEN)")
    parser.add_argument("--wait-ms", type=int, default=20000, help="how long each claim waits for work")
    parser.add_argument("--max-tasks", type=int, default=0, help="stop after this many attempts (0: never)")
    args = parser.parse_args()

    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    else:
        token = os.environ.get("SWARM_TOKEN", "")
    if not token:
        sys.exit("remote_worker: no token (--token-file F, or SWARM_TOKEN)")

    api = Api(args.api)
    done = 0
    while args.max_tasks == 0 or done < args.max_tasks:
        try:
            status, claim = api.call("POST", "/v1/work/claim", token, {"queues": args.queue, "wait_ms": args.wait_ms})
        except OSError as e:
            print(f"remote_worker: {args.api}: {e}; trying again", file=sys.stderr)
            time.sleep(1)
            continue
        if status == 204:
            continue
        if status != 200:
            sys.exit(f"remote_worker: claim refused ({status}): {claim}")
        task = claim["task_id"]
        try:
            result = {"value": work(api, claim), "ok": True}
        except Exception as e:  # the attempt fails with the reason; the step's retry policy decides
            result = {"value": f"{type(e).__name__}: {e}", "ok": False}
        status, body = api.call("POST", f"/v1/tasks/{task}/result", claim["token"], result)
        if status == 409:
            print(f"remote_worker: {task} ended without this result: {body['error']['message']}", file=sys.stderr)
        elif status != 204:
            print(f"remote_worker: result for {task} refused ({status}): {body}", file=sys.stderr)
        done += 1


if __name__ == "__main__":
    main()
