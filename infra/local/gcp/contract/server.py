"""HTTP side: one listener per API, the request pipeline, and the control endpoints.

Pipeline for an API call: find the discovery method -> check query and body against
the document -> authenticate -> injected fault -> handler (which checks permissions,
quotas and state) -> self-check of the response shape -> log.
"""

import json
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .apis import Call, load_all
from .apis import run as run_api
from .apis import secretmanager as sm_api
from .common import ApiError, STATUS_NAMES, rfc3339
from .discovery import ContractViolation

API_NAMES = ["iam", "iamcredentials", "secretmanager", "run", "cloudresourcemanager",
             "cloudscheduler", "serviceusage"]
FAULT_STATUSES = {400, 401, 403, 404, 409, 412, 429, 500, 503, 504}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 resets connections when a client opens many
    # at once (the tests' 16 threads did; so can a pooled Rust client).
    request_queue_size = 128

    def __init__(self, address, api, world, apis):
        self.api = api
        self.world = world
        self.apis = apis
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Google's clients expect
    server_version = "ledgerlake-contract-server"

    def log_message(self, fmt, *args):  # the pipeline logs its own line per request
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # ---- plumbing ---------------------------------------------------------------

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status, body, headers=None):
        data = json.dumps(body, indent=2).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, http_method):
        try:
            url = urllib.parse.urlsplit(self.path)
            body = self._read_body()
            if url.path.startswith("/__contract/"):
                return self._control(http_method, url.path, body)
            if http_method == "GET" and url.path == "/":
                # Readiness probe (infra/local/gcp-emulators polls `GET /`). No Google
                # method has an empty path, so this is neither checked nor logged.
                return self._send(200, {"api": self.server.api, "ok": True})
            self._api_call(http_method, url, body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ---- API calls --------------------------------------------------------------

    def _api_call(self, http_method, url, raw_body):
        world, api_name = self.server.world, self.server.api
        started = time.time()
        ctx = {"method": None, "principal": None}
        try:
            result = self._answer(http_method, url, raw_body, ctx)
            status, body, headers = 200, result, {}
        except ApiError as e:
            if e.violation:
                world.record_violation({"api": api_name, "method": ctx["method"],
                                        "httpMethod": http_method, "path": url.path,
                                        "message": e.message, "time": rfc3339(time.time())})
                e.message = "contract violation: " + e.message
            status, body = e.code, e.body()
            headers = {"Retry-After": str(int(e.retry_after))} if e.retry_after is not None else {}
        except Exception:  # a bug in the server: answer like Google would, log loudly
            traceback.print_exc()
            err = ApiError(500, "Internal error in the contract server.")
            status, body, headers = 500, err.body(), {}
        # Recorded before the answer leaves, so a client that reads the log right after
        # its call always finds the call there.
        world.record_request({"api": api_name, "method": ctx["method"],
                              "principal": ctx["principal"], "path": url.path,
                              "status": status, "time": rfc3339(started)})
        # Never the token, never a payload: method, principal and status only.
        sys.stderr.write("[contract] %s %s principal=%s status=%d %.0fms\n"
                         % (api_name, ctx["method"] or "%s %s" % (http_method, url.path),
                            ctx["principal"] or "-", status, (time.time() - started) * 1000))
        sys.stderr.flush()
        self._send(status, body, headers)

    def _answer(self, http_method, url, raw_body, ctx):
        """The pipeline; returns the result or raises ApiError. Fills ctx for the log."""
        world, api_name = self.server.world, self.server.api
        api = self.server.apis[api_name]
        try:
            method, params = api.find_method(http_method, url.path)
            ctx["method"] = method.id
            pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
            query, problems = api.check_query(method, pairs)
            body, body_problems = api.validate_body(method, raw_body)
            problems += body_problems
            if problems:
                raise ContractViolation("; ".join(problems), method.id)
        except ContractViolation as v:
            ctx["method"] = v.method_id or ctx["method"]
            try:  # for the log only: who sent the request that broke the contract
                ctx["principal"] = world.authenticate(self.headers.get("Authorization"))
            except ApiError:
                pass
            world.record_violation({"api": api_name, "method": ctx["method"],
                                    "httpMethod": http_method, "path": url.path,
                                    "message": v.message, "time": rfc3339(time.time())})
            raise ApiError(400, "contract violation: %s (%s %s)"
                           % (v.message, http_method, url.path))
        auth = self.headers.get("Authorization")
        token_param = query.get("access_token") or query.get("oauth_token")
        if not auth and token_param:  # Google also takes the token as a query parameter
            auth = "Bearer " + token_param
        ctx["principal"] = world.authenticate(auth)
        fault = world.take_fault(method.id)
        if fault is not None:
            raise _fault_error(fault, method.id)
        fn = self.server.handlers.get(method.id)
        if fn is None:
            raise ApiError(501, "%s is valid but not reproduced by the contract server."
                           % method.id)
        result = fn(world, Call(api_name, method, params, query, body, ctx["principal"]))
        self._self_check(api, method, result)
        return result

    def _self_check(self, api, method, result):
        if method.response_ref is None:
            return
        problems = []
        api.validate({"$ref": method.response_ref}, result, "response", problems)
        if problems:
            sys.stderr.write("[contract] SERVER BUG: %s response off its schema: %s\n"
                             % (method.id, "; ".join(problems)))

    # ---- control endpoints --------------------------------------------------------

    def _control(self, http_method, path, raw_body):
        world = self.server.world
        if http_method == "GET" and path == "/__contract/requests":
            with world.lock:
                return self._send(200, list(world.requests))
        if http_method == "GET" and path == "/__contract/violations":
            with world.lock:
                return self._send(200, list(world.violations))
        if http_method == "GET" and path == "/__contract/state":
            return self._send(200, state_dump(world))
        if http_method == "POST" and path == "/__contract/reset":
            run_api.kill_all(world)
            world.reset()
            return self._send(200, {})
        if http_method == "POST" and path == "/__contract/faults":
            try:
                fault = json.loads(raw_body or b"{}")
                known = any(fault.get("method") in a.methods_by_id
                            for a in self.server.apis.values())
                if not known:
                    raise ValueError("unknown method id %r" % fault.get("method"))
                if fault.get("status") not in FAULT_STATUSES:
                    raise ValueError("status must be one of %s" % sorted(FAULT_STATUSES))
                fault["times"] = int(fault.get("times", 1))
                fault["retry_after"] = int(fault.get("retry_after", 1))
            except (ValueError, TypeError, AttributeError) as e:
                return self._send(400, {"error": {"code": 400, "message": str(e),
                                                  "status": "INVALID_ARGUMENT"}})
            world.add_fault(fault)
            return self._send(200, fault)
        self._send(404, {"error": {"code": 404, "message": "no control endpoint %s %s"
                                   % (http_method, path), "status": "NOT_FOUND"}})


def _fault_error(fault, method_id):
    code = fault["status"]
    status = STATUS_NAMES.get(code, "UNKNOWN")
    if code == 409:
        status = "ALREADY_EXISTS" if method_id.endswith(".create") else "ABORTED"
    status = fault.get("status_name") or status
    retry = fault.get("retry_after") if code in (429, 503) else None
    details = None
    if code == 429:
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": "%ds" % retry}]
    return ApiError(code, fault.get("message") or "Injected fault: %s %s" % (code, status),
                    status=status, retry_after=retry, details=details)


def state_dump(world):
    from .apis.iam import public
    with world.lock:
        dump = {
            "serviceAccounts": [dict(public(sa), visible=sa["_visible_at"] <= time.time())
                                for sa in world.service_accounts.values()],
            "policies": {name: p.to_json() for name, p in world.policies.items()},
            "secrets": sm_api.state_dump(world),
            "run": run_api.state_dump(world),
            "schedulerJobs": list(world.scheduler_jobs.values()),
            "services": [{"project": p, "service": s, "state": st}
                         for (p, s), st in sorted(world.services.items())],
            "quotaDenials": list(world.quota_denials),
            "faults": world.faults,
        }
        # Serialised under the lock: the live dicts change while other requests run.
        return json.loads(json.dumps(dump))


def start_servers(host, world, apis):
    handlers = load_all()
    servers = {}
    for name in API_NAMES:
        srv = Server((host, 0), name, world, apis)
        srv.handlers = handlers
        servers[name] = srv
    threads = []
    for name, srv in servers.items():
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                             name="listener " + name, daemon=True)
        t.start()
        threads.append(t)
    return servers, threads
