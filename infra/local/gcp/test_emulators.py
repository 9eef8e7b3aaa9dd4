"""infra/local/gcp-emulators: start prints only export lines, every endpoint
answers (a bucket, a dataset and a gs:// load job through the emulators' REST
APIs; service accounts through the contract server), a second start starts
nothing, and stop ends every process.

    python3 -m unittest infra/local/gcp/test_emulators.py

Standard library only. The emulators' virtualenv is the script's usual one
(LEDGERLAKE_GCP_EMULATORS_VENV, if set), so a run after the first does not
install anything; the state directory is a temporary one.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.normpath(os.path.join(HERE, "..", "gcp-emulators"))
EXPORT = re.compile(r"^export ([A-Z][A-Z0-9_]*)=(\S+)$")
NAMES = [
    "LEDGERLAKE_CLOUD",
    "LEDGERLAKE_GCP_PLATFORM_PROJECT",
    "LEDGERLAKE_GCP_REGION",
    "LEDGERLAKE_GCP_LOCATION",
    "LEDGERLAKE_GCP_TENANT_JOB_IMAGE",
    "LEDGERLAKE_GCP_CONTROL_PLANE_URL",
    "LEDGERLAKE_GCP_ACCESS_TOKEN",
    "LEDGERLAKE_GCP_STORAGE_ENDPOINT",
    "LEDGERLAKE_GCP_BIGQUERY_ENDPOINT",
    "LEDGERLAKE_GCP_IAM_ENDPOINT",
    "LEDGERLAKE_GCP_IAMCREDENTIALS_ENDPOINT",
    "LEDGERLAKE_GCP_SECRETMANAGER_ENDPOINT",
    "LEDGERLAKE_GCP_RUN_ENDPOINT",
    "LEDGERLAKE_GCP_RESOURCEMANAGER_ENDPOINT",
    "LEDGERLAKE_GCP_SCHEDULER_ENDPOINT",
    "LEDGERLAKE_GCP_SERVICEUSAGE_ENDPOINT",
]
SERVICES = ["storage", "bigquery", "contract"]


def call(method, url, body=None, headers=None):
    """(status, parsed JSON body or raw bytes) of one request."""
    headers = dict(headers or {})
    data = None
    if isinstance(body, bytes):
        data = body
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (already ended, not yet reaped) counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class GcpEmulatorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.state = tempfile.mkdtemp(prefix="gcp-emulators-test-")
        cls.env = dict(os.environ, LEDGERLAKE_GCP_EMULATORS_DIR=cls.state)
        # From another working directory: the script finds the repository itself.
        cls.started = time.monotonic()
        cls.start = cls.run_script("start")
        cls.start_seconds = time.monotonic() - cls.started
        if cls.start.returncode != 0:
            cls.run_script("stop")
            raise AssertionError("start failed:\n" + cls.start.stderr)
        cls.exports = {}
        for line in cls.start.stdout.splitlines():
            m = EXPORT.match(line)
            if m:
                cls.exports[m.group(1)] = m.group(2)
        cls.pids = {}
        for name in SERVICES:
            with open(os.path.join(cls.state, name + ".pid")) as fh:
                cls.pids[name] = int(fh.read())

    @classmethod
    def tearDownClass(cls):
        cls.run_script("stop")
        shutil.rmtree(cls.state, ignore_errors=True)

    @classmethod
    def run_script(cls, command):
        return subprocess.run([SCRIPT, command], cwd=tempfile.gettempdir(), env=cls.env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=900)

    def test_a_start_prints_only_the_exports(self):
        lines = self.start.stdout.splitlines()
        for line in lines:
            self.assertRegex(line, EXPORT)
        self.assertEqual([EXPORT.match(line).group(1) for line in lines], NAMES)
        self.assertEqual(self.exports["LEDGERLAKE_CLOUD"], "gcp")
        self.assertEqual(self.exports["LEDGERLAKE_GCP_PLATFORM_PROJECT"], "ledgerlake-platform")
        for name in NAMES:
            if name.endswith("_ENDPOINT"):
                self.assertRegex(self.exports[name], r"^http://127\.0\.0\.1:\d+$")
        with open(os.path.join(self.state, "token")) as fh:
            self.assertEqual(fh.read().strip(), self.exports["LEDGERLAKE_GCP_ACCESS_TOKEN"])
        self.assertEqual(os.stat(os.path.join(self.state, "token")).st_mode & 0o777, 0o600)

    def test_b_a_second_start_starts_nothing_and_prints_the_same(self):
        again = self.run_script("start")
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(again.stdout, self.start.stdout)
        self.assertIn("already running", again.stderr)
        env = self.run_script("env")
        self.assertEqual(env.returncode, 0, env.stderr)
        self.assertEqual(env.stdout, self.start.stdout)

    def test_c_storage_bucket_and_object(self):
        root = self.exports["LEDGERLAKE_GCP_STORAGE_ENDPOINT"]
        bucket = "t1-" + uuid.uuid4().hex[:8]
        status, body = call("POST", root + "/storage/v1/b?project=ledgerlake-platform",
                            {"name": bucket})
        self.assertEqual(status, 200, body)
        status, body = call("PATCH", root + "/storage/v1/b/" + bucket,
                            {"labels": {"tenant": "t1"}})
        self.assertEqual(status, 200, body)
        status, body = call("GET", root + "/storage/v1/b/" + bucket)
        self.assertEqual((status, body["name"], body["labels"]), (200, bucket, {"tenant": "t1"}))
        status, body = call("POST", root + "/upload/storage/v1/b/%s/o?uploadType=media&name=a/b.txt"
                            % bucket, b"hello", {"Content-Type": "text/plain"})
        self.assertEqual(status, 200, body)
        self.assertEqual(call("GET", root + "/storage/v1/b/%s/o/a%%2Fb.txt?alt=media" % bucket),
                         (200, b"hello"))

    def test_d_bigquery_dataset_and_query(self):
        root = self.exports["LEDGERLAKE_GCP_BIGQUERY_ENDPOINT"]
        base = root + "/bigquery/v2/projects/ledgerlake-platform"
        status, body = call("POST", base + "/datasets", {
            "datasetReference": {"projectId": "ledgerlake-platform", "datasetId": "t1_raw"},
            "location": "EU", "labels": {"tenant": "t1"},
            "access": [{"role": "WRITER", "userByEmail": "t1@ledgerlake-platform.iam.gserviceaccount.com"}]})
        self.assertEqual(status, 200, body)
        status, body = call("GET", base + "/datasets/t1_raw")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["labels"], {"tenant": "t1"})
        self.assertEqual(body["access"][0]["userByEmail"],
                         "t1@ledgerlake-platform.iam.gserviceaccount.com")
        # The spatial extension loaded offline: a GEOGRAPHY function runs.
        status, body = call("POST", base + "/queries", {
            "query": "SELECT ST_ASTEXT(ST_GEOGPOINT(1, 2)) AS g", "useLegacySql": False})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["rows"], [{"f": [{"v": "POINT (1 2)"}]}])

    def test_e_bigquery_loads_a_gs_uri_from_the_storage_emulator(self):
        storage = self.exports["LEDGERLAKE_GCP_STORAGE_ENDPOINT"]
        base = self.exports["LEDGERLAKE_GCP_BIGQUERY_ENDPOINT"] + "/bigquery/v2/projects/ledgerlake-platform"
        bucket = "t2-" + uuid.uuid4().hex[:8]
        self.assertEqual(call("POST", storage + "/storage/v1/b?project=ledgerlake-platform",
                              {"name": bucket})[0], 200)
        status, body = call("POST", storage + "/upload/storage/v1/b/%s/o?uploadType=media&name=raw/p1.ndjson"
                            % bucket, b'{"id": "a", "n": 1}\n{"id": "b", "n": 2}\n',
                            {"Content-Type": "application/x-ndjson"})
        self.assertEqual(status, 200, body)
        self.assertEqual(call("POST", base + "/datasets", {
            "datasetReference": {"projectId": "ledgerlake-platform", "datasetId": "t2_raw"}})[0], 200)
        status, body = call("POST", base + "/jobs", {"configuration": {"load": {
            "sourceUris": ["gs://%s/raw/*.ndjson" % bucket],
            "sourceFormat": "NEWLINE_DELIMITED_JSON",
            "destinationTable": {"projectId": "ledgerlake-platform", "datasetId": "t2_raw", "tableId": "pages"},
            "schema": {"fields": [{"name": "id", "type": "STRING"}, {"name": "n", "type": "INT64"}]}}}})
        self.assertEqual(status, 200, body)
        self.assertNotIn("errorResult", body["status"])
        status, body = call("POST", base + "/queries", {
            "query": "SELECT SUM(n) FROM t2_raw.pages", "useLegacySql": False})
        self.assertEqual((status, body["rows"]), (200, [{"f": [{"v": "3"}]}]))

    def test_f_contract_server_lists_service_accounts_with_the_token(self):
        iam = self.exports["LEDGERLAKE_GCP_IAM_ENDPOINT"]
        url = iam + "/v1/projects/ledgerlake-platform/serviceAccounts"
        token = self.exports["LEDGERLAKE_GCP_ACCESS_TOKEN"]
        status, body = call("GET", url, headers={"Authorization": "Bearer " + token})
        self.assertEqual(status, 200, body)
        self.assertEqual(call("GET", url)[0], 401)
        for name in NAMES:
            if name.endswith("_ENDPOINT"):
                status, _ = call("GET", self.exports[name] + "/")
                self.assertGreaterEqual(status, 200, name)

    def test_z_stop_ends_every_process(self):
        for name, pid in self.pids.items():
            self.assertTrue(alive(pid), name)
        stop = self.run_script("stop")
        self.assertEqual(stop.returncode, 0, stop.stderr)
        for name, pid in self.pids.items():
            self.assertFalse(alive(pid), name)
            self.assertFalse(os.path.exists(os.path.join(self.state, name + ".pid")))
        self.assertEqual(self.run_script("stop").returncode, 0)
        self.assertNotEqual(self.run_script("env").returncode, 0)


if __name__ == "__main__":
    unittest.main()
