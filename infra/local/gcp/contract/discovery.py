"""Google discovery documents as a contract: method lookup, parameter and body checks.

A discovery document describes each REST method twice: `flatPath` (one `{xId}` per
URL segment, so literal segments decide which method a URL is) and `path` (the
real parameter names, `{+name}` spanning several segments, checked against each
parameter's `pattern`). We pick the method with `flatPath`, then read the
parameters with `path`. A URL that fits no `flatPath` but fits some `path` has a
parameter outside its pattern, which we can report precisely.
"""

import base64
import difflib
import json
import os
import re
import urllib.parse

# google-cloud-rust (and other gRPC-transcoding clients) send `$alt=json;enum-encoding=int`,
# a system parameter that Google accepts but discovery documents do not list.
EXTRA_STANDARD_PARAMS = {
    "$alt": {"type": "string", "location": "query"},
}

DATETIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
DURATION_RE = re.compile(r"^-?\d+(\.\d{1,9})?s$")
INT_RE = re.compile(r"^-?\d+$")
INT32 = (-(2 ** 31), 2 ** 31 - 1)
UINT32 = (0, 2 ** 32 - 1)
INT64 = (-(2 ** 63), 2 ** 63 - 1)
UINT64 = (0, 2 ** 64 - 1)


class Method:
    def __init__(self, api, m):
        self.api = api
        self.id = m["id"]
        self.http_method = m["httpMethod"]
        self.path = api.service_path + m["path"]
        self.flat_path = api.service_path + m.get("flatPath", m["path"])
        self.parameters = m.get("parameters", {})
        self.parameter_order = m.get("parameterOrder", [])
        self.request_ref = (m.get("request") or {}).get("$ref")
        self.response_ref = (m.get("response") or {}).get("$ref")
        self.flat_re = _template_regex(self.flat_path)
        self.path_re = _template_regex(self.path)
        # More literal characters = more specific (`.../jobs/{j}:run` beats `.../{+name}`).
        self.literal_len = len(re.sub(r"\{[^}]*\}", "", self.flat_path))


def _template_regex(template):
    """`v1/{+name}:run` -> regex; `{+x}` spans segments, `{x}` is one segment."""
    out, pos = [], 0
    for m in re.finditer(r"\{(\+?)([^}]+)\}", template):
        out.append(re.escape(template[pos:m.start()]))
        group = "g%d" % len(out)
        out.append("(?P<%s>%s)" % (group, ".+" if m.group(1) else "[^/]+"))
        pos = m.end()
    out.append(re.escape(template[pos:]))
    names = [m.group(2) for m in re.finditer(r"\{(\+?)([^}]+)\}", template)]
    return re.compile("^" + "".join(out) + "$"), names


def _match(template_re, raw_path):
    regex, names = template_re
    m = regex.match(raw_path)
    if not m:
        return None
    values = [v for k, v in sorted(m.groupdict().items(), key=lambda kv: int(kv[0][1:]))]
    return {n: urllib.parse.unquote(v) for n, v in zip(names, values)}


class Api:
    def __init__(self, doc):
        self.doc = doc
        self.name = doc["name"]
        self.version = doc["version"]
        self.service_path = doc.get("servicePath", "")
        self.schemas = doc.get("schemas", {})
        self.standard_params = dict(doc.get("parameters", {}))
        self.standard_params.update(EXTRA_STANDARD_PARAMS)
        self.methods = []
        self._collect(doc.get("resources", {}))
        self.methods_by_id = {m.id: m for m in self.methods}

    def _collect(self, resources):
        for res in resources.values():
            for m in res.get("methods", {}).values():
                self.methods.append(Method(self, m))
            self._collect(res.get("resources", {}))

    def find_method(self, http_method, raw_path):
        """Returns (Method, path params) or raises ContractViolation."""
        raw_path = raw_path.lstrip("/")
        candidates = [m for m in self.methods if m.http_method == http_method]
        flat = [m for m in candidates if m.flat_re[0].match(raw_path)]
        if flat:
            method = max(flat, key=lambda m: m.literal_len)
            params = _match(method.path_re, raw_path)
            if params is None:  # flatPath and path disagree: never seen in Google's docs
                raise ContractViolation("%s %s fits flatPath of %s but not its path %s"
                                        % (http_method, "/" + raw_path, method.id, method.path))
            problems = self._check_path_params(method, params)
            if problems:
                raise ContractViolation("; ".join(problems), method.id)
            return method, params
        # No flatPath fits. If a `path` template fits, say which parameter broke its pattern.
        near = []
        for m in candidates:
            params = _match(m.path_re, raw_path)
            if params is not None:
                closeness = difflib.SequenceMatcher(None, raw_path, m.flat_path).ratio()
                near.append((-closeness, "%s (%s)" % (
                    m.id, "; ".join(self._check_path_params(m, params)))))
        near = [text for _, text in sorted(near)]
        if near:
            raise ContractViolation("%s /%s: path parameter outside its pattern for %s"
                                    % (http_method, raw_path, " or ".join(near[:3])))
        raise ContractViolation("no %s method of %s %s matches %s /%s"
                                % (http_method, self.name, self.version, http_method, raw_path))

    def _check_path_params(self, method, params):
        problems = []
        for name, value in params.items():
            spec = method.parameters.get(name)
            if spec is None:
                problems.append("path parameter %s is not declared" % name)
                continue
            pattern = spec.get("pattern")
            if pattern and not re.search(pattern, value):
                problems.append("path parameter %s=%r does not match pattern %s"
                                % (name, value, pattern))
        return problems

    def check_query(self, method, pairs):
        """pairs: list of (name, value) from the query string.

        Returns (dict name -> value or list for repeated, list of problems).
        """
        seen, problems = {}, []
        for name, value in pairs:
            spec = method.parameters.get(name)
            if spec is not None and spec.get("location") == "path":
                problems.append("path parameter %s given in the query string" % name)
                continue
            if spec is None:
                spec = self.standard_params.get(name)
            if spec is None:
                problems.append("unknown query parameter %r" % name)
                continue
            problem = check_scalar(spec, value, name)
            if name == "$alt" and not value.startswith("json"):
                problem = "$alt=%r: only json responses are served" % value
            if problem:
                problems.append(problem)
                continue
            typed = convert_scalar(spec, value)
            if spec.get("repeated"):
                seen.setdefault(name, []).append(typed)
            elif name in seen:
                problems.append("query parameter %s given more than once (not repeated)" % name)
            else:
                seen[name] = typed
        for name, spec in method.parameters.items():
            if spec.get("location") != "query" or name in seen:
                continue
            # Google marks most required query parameters only in prose ("Required. ...").
            if spec.get("required") or spec.get("description", "").startswith("Required."):
                problems.append("required query parameter %s is missing" % name)
        return seen, problems

    def validate_body(self, method, body_bytes):
        """Returns (parsed body or None, list of problems)."""
        text = body_bytes.decode("utf-8", "replace").strip() if body_bytes else ""
        if method.request_ref is None:
            # Clients sometimes send `{}` for body-less POSTs; anything else is a mistake.
            if text and text != "{}":
                return None, ["%s takes no request body" % method.id]
            return None, []
        if not text:
            return {}, []
        try:
            body = json.loads(text)
        except ValueError as e:
            return None, ["request body is not JSON (%s)" % e]
        problems = []
        self.validate({"$ref": method.request_ref}, body, "body", problems)
        return body, problems

    def validate(self, spec, value, where, problems):
        """Recursive check of a JSON value against a discovery schema; appends problems."""
        if value is None:  # proto3 JSON: null means the default value
            return
        if "$ref" in spec:
            ref = spec["$ref"]
            schema = self.schemas.get(ref)
            if schema is None:
                problems.append("%s: unknown schema %s" % (where, ref))
                return
            return self._validate_schema(schema, value, where, problems, ref)
        return self._validate_schema(spec, value, where, problems, None)

    def _validate_schema(self, spec, value, where, problems, ref):
        t = spec.get("type")
        label = " (%s)" % ref if ref else ""
        if t == "any":
            return
        if t == "object" or "properties" in spec or "additionalProperties" in spec:
            if not isinstance(value, dict):
                problems.append("%s%s: expected an object, got %s" % (where, label, _kind(value)))
                return
            props = spec.get("properties")
            addl = spec.get("additionalProperties")
            free_form = props is None and addl is None and "id" not in spec
            for key, sub in value.items():
                if props is not None and key in props:
                    self.validate(props[key], sub, "%s.%s" % (where, key), problems)
                elif addl is not None:
                    self.validate(addl, sub, "%s[%r]" % (where, key), problems)
                elif not free_form:
                    problems.append("%s%s: unknown field %r" % (where, label, key))
            return
        if t == "array":
            if not isinstance(value, list):
                problems.append("%s: expected an array, got %s" % (where, _kind(value)))
                return
            for i, item in enumerate(value):
                self.validate(spec.get("items", {}), item, "%s[%d]" % (where, i), problems)
            return
        problem = check_json_scalar(spec, value, where)
        if problem:
            problems.append(problem)


def _kind(value):
    if isinstance(value, bool):
        return "boolean %s" % json.dumps(value)
    if isinstance(value, (int, float)):
        return "number %s" % json.dumps(value)
    if isinstance(value, str):
        return "string %s" % json.dumps(value[:40])
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _int_range(fmt):
    return {"int32": INT32, "uint32": UINT32, "int64": INT64, "uint64": UINT64}.get(fmt, INT64)


def check_json_scalar(spec, value, where):
    """One JSON scalar against string/integer/number/boolean (+format, enum). None = fine."""
    t, fmt = spec.get("type"), spec.get("format")
    enum = spec.get("enum")
    if t == "boolean":
        return None if isinstance(value, bool) else "%s: expected a boolean, got %s" % (where, _kind(value))
    if t == "integer" or (t == "string" and fmt in ("int64", "uint64")):
        # Google encodes 64-bit integers as JSON strings; proto3 JSON accepts both forms.
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return "%s: expected an integer (%s), got %s" % (where, fmt, _kind(value))
        if isinstance(value, str) and not INT_RE.match(value):
            return "%s: expected an integer (%s), got %s" % (where, fmt, _kind(value))
        lo, hi = _int_range(fmt)
        if not lo <= int(value) <= hi:
            return "%s: %s out of %s range" % (where, value, fmt)
        return None
    if t == "number":
        if isinstance(value, bool):
            return "%s: expected a number, got %s" % (where, _kind(value))
        if isinstance(value, (int, float)) or value in ("NaN", "Infinity", "-Infinity"):
            return None
        return "%s: expected a number, got %s" % (where, _kind(value))
    if t == "string":
        if enum and isinstance(value, int) and not isinstance(value, bool):
            # enum-encoding=int: proto3 JSON allows an enum's number instead of its name.
            return None if 0 <= value < len(enum) else "%s: enum number %d out of range" % (where, value)
        if not isinstance(value, str):
            return "%s: expected a string, got %s" % (where, _kind(value))
        if enum and value not in enum:
            return "%s: %r is not one of %s" % (where, value, ", ".join(enum))
        if fmt == "byte" and not _is_base64(value):
            # The value is not echoed: byte fields carry secret payloads.
            return "%s: not base64 (format byte)" % where
        if fmt == "google-datetime" and not DATETIME_RE.match(value):
            return "%s: %r is not an RFC 3339 timestamp" % (where, value)
        if fmt == "google-duration" and not DURATION_RE.match(value):
            return "%s: %r is not a duration like \"3600s\"" % (where, value)
        return None
    return None


def _is_base64(value):
    try:
        s = value.replace("-", "+").replace("_", "/")  # Google accepts the URL-safe alphabet too
        s += "=" * (-len(s) % 4)
        base64.b64decode(s, validate=True)
        return True
    except (ValueError, TypeError):
        return False


def check_scalar(spec, value, name):
    """A query-string value (always text) against its parameter spec."""
    t, fmt = spec.get("type"), spec.get("format")
    if t == "integer" or (t == "string" and fmt in ("int64", "uint64")):
        if not INT_RE.match(value):
            return "query parameter %s=%r is not an integer" % (name, value)
        lo, hi = _int_range(fmt)
        if not lo <= int(value) <= hi:
            return "query parameter %s=%r out of %s range" % (name, value, fmt)
        return None
    if t == "boolean":
        if value.lower() not in ("true", "false"):
            return "query parameter %s=%r is not a boolean" % (name, value)
        return None
    if t == "number":
        try:
            float(value)
        except ValueError:
            return "query parameter %s=%r is not a number" % (name, value)
        return None
    enum = spec.get("enum")
    if enum and value not in enum:
        return "query parameter %s=%r is not one of %s" % (name, value, ", ".join(enum))
    if fmt == "google-duration" and not DURATION_RE.match(value):
        return "query parameter %s=%r is not a duration" % (name, value)
    if fmt == "google-datetime" and not DATETIME_RE.match(value):
        return "query parameter %s=%r is not an RFC 3339 timestamp" % (name, value)
    return None


def convert_scalar(spec, value):
    t = spec.get("type")
    if t == "integer":
        return int(value)
    if t == "boolean":
        return value.lower() == "true"
    if t == "number":
        return float(value)
    return value


class ContractViolation(Exception):
    def __init__(self, message, method_id=None):
        super().__init__(message)
        self.message = message
        self.method_id = method_id


def load_apis(directory, names):
    """names: API short names (iam, run, ...); picks `<name>.<version>.json` from directory."""
    apis = {}
    files = os.listdir(directory)
    for name in names:
        matches = sorted(f for f in files if f.startswith(name + ".") and f.endswith(".json"))
        if not matches:
            raise SystemExit("no discovery document for %s in %s" % (name, directory))
        with open(os.path.join(directory, matches[-1]), encoding="utf-8") as fh:
            apis[name] = Api(json.load(fh))
    return apis
