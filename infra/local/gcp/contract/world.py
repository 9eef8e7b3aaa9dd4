"""State shared by every API listener: principals and tokens, IAM policies, quotas,
injected faults, and the request / violation logs the tests read.

One re-entrant lock guards everything. The server is a test double; a single lock
keeps concurrent requests from different listeners trivially consistent.
"""

import hashlib
import json
import math
import re
import secrets
import threading

from .common import ApiError, b64decode_any, new_etag, now, project_number, rfc3339

MAX_POLICY_PRINCIPALS = 1500  # Google: 1,500 members in all bindings of a policy
MAX_POLICY_GROUPS = 250       # of which at most 250 Google groups

# Default rates per minute per project (multiplied by --quota-scale).
QUOTAS = {
    # IAM v1 API "write requests": 600 per project per minute (cloud.google.com/iam/quotas).
    # It counts service account create/delete/disable/enable (so creation has no bucket
    # of its own: Google publishes no separate figure) and, as the brief for this server
    # asks, setIamPolicy of every API, since all of them write allow policies.
    "iam.writes": 600,
    # Service Account Credentials API "requests to generate credentials": 60,000/min.
    "iamcredentials.generate": 60000,
    # Secret Manager: "Access requests per minute per project" is 90,000.
    "secretmanager.access": 90000,
    # Cloud Run Admin API write requests: Google's quota page gives no figure we could
    # confirm; we use 180 per minute, keyed by project and region.
    "run.writes": 180,
}

MEMBER_PREFIXES = ("user:", "serviceAccount:", "group:", "domain:", "deleted:",
                   "principal://", "principalSet://", "projectOwner:", "projectEditor:",
                   "projectViewer:")
SPECIAL_MEMBERS = ("allUsers", "allAuthenticatedUsers")


def _same_etag(a, b):
    """Etags are bytes on the wire; compare them decoded (padding, URL-safe alphabet)."""
    try:
        return b64decode_any(a) == b64decode_any(b)
    except ValueError:
        return a == b


class Policy:
    def __init__(self, bindings=None):
        self.bindings = bindings or []
        # Google answers "ACAB" for a policy that was never written.
        self.etag = "ACAB"
        self.version = 1

    def to_json(self):
        out = {"version": self.version, "etag": self.etag}
        if self.bindings:
            out["bindings"] = self.bindings
        return out

    def has(self, member, roles):
        for b in self.bindings:
            # Conditional bindings are not evaluated here: they never grant (stricter).
            if b.get("condition"):
                continue
            if b.get("role") in roles and member in b.get("members", []):
                return True
        return False


class World:
    def __init__(self, platform_token, platform_principal, sa_visibility_delay=0.0,
                 lro_delay=0.0, enforce_quotas=False, quota_scale=1.0, executor=None):
        self.lock = threading.RLock()
        self.platform_token = platform_token
        self.platform_principal = platform_principal
        self.sa_visibility_delay = sa_visibility_delay
        self.lro_delay = lro_delay
        self.enforce_quotas = enforce_quotas
        self.quota_scale = quota_scale
        self.executor = executor
        self.reset()

    def reset(self):
        with self.lock:
            self.tokens = {}          # token -> (principal, expiry ts)
            self.policies = {}        # resource name -> Policy
            self.projects = {}        # number -> id (seen so far)
            self.requests = []
            self.violations = []
            self.faults = {}          # method id -> list of fault dicts
            self.buckets = {}         # (project, quota) -> [tokens, last ts]
            self.quota_denials = []
            # Per-API state, filled by the API modules (see apis/*.py).
            self.service_accounts = {}  # email -> dict (+ private keys starting with _)
            self.secrets = {}           # (project id, secret id) -> dict
            self.run_jobs = {}          # (project, location, job id) -> dict
            self.run_executions = {}    # execution name -> dict
            self.operations = {}        # operation name -> dict
            self.scheduler_jobs = {}    # job name -> dict
            self.services = {}          # (project id, service) -> state
            self.children = {}          # execution name -> Popen (executor)

    # ---- projects -----------------------------------------------------------

    def project_id(self, ref):
        """`ref` may be a project id or number; returns the id (numbers map back once seen)."""
        with self.lock:
            if re.fullmatch(r"\d+", ref):
                return self.projects.get(ref, ref)
            self.projects[project_number(ref)] = ref
            return ref

    # ---- authentication -----------------------------------------------------

    def authenticate(self, header):
        """Authorization header -> principal; 401 otherwise."""
        m = re.match(r"^Bearer\s+(\S+)\s*$", header or "")
        if not m:
            raise ApiError(401, "Request is missing required authentication credential. "
                           "Expected OAuth 2 access token, login cookie or other valid "
                           "authentication credential.")
        token = m.group(1)
        if secrets.compare_digest(token.encode("utf-8", "replace"), self.platform_token.encode()):
            return self.platform_principal
        with self.lock:
            entry = self.tokens.get(token)
        if entry is None or entry[1] <= now():
            raise ApiError(401, "Request had invalid authentication credentials. Expected "
                           "OAuth 2 access token, login cookie or other valid "
                           "authentication credential.")
        return entry[0]

    def mint_token(self, principal, lifetime):
        token = "ya29.local." + secrets.token_urlsafe(32)
        expiry = now() + lifetime
        with self.lock:
            self.tokens[token] = (principal, expiry)
        return token, expiry

    # ---- authorization ------------------------------------------------------

    def policy(self, resource):
        with self.lock:
            p = self.policies.get(resource)
            if p is None:
                p = self.policies[resource] = Policy()
            return p

    def allowed(self, principal, roles, resources, project):
        """Platform, or a role in `roles` on any of `resources` or on the project."""
        if principal == self.platform_principal:
            return True
        with self.lock:
            names = list(resources) + ["projects/%s" % project]
            for r in names:
                p = self.policies.get(r)
                if p and p.has(principal, set(roles) | {"roles/owner"}):
                    return True
        return False

    def require(self, principal, permission, resource_label, roles, resources, project):
        if not self.allowed(principal, roles, resources, project):
            raise ApiError(403, "Permission '%s' denied on resource '%s' (or it may not exist)."
                           % (permission, resource_label))

    def require_platform(self, principal, permission, resource_label, project):
        # Admin operations: platform, or roles/owner / roles/editor on the project.
        self.require(principal, permission, resource_label, ["roles/editor"], [], project)

    # ---- IAM policies (shared by every API's get/setIamPolicy) ----------------

    def get_iam_policy(self, resource, requested_version=None):
        with self.lock:
            out = self.policy(resource).to_json()
        if (requested_version or 0) < 3 and any("condition" in b for b in out.get("bindings", [])):
            # What IAM does for a version-1 reader of a conditional policy: conditional
            # bindings show as `<role>_withcond_<hash>` without their condition, and the
            # policy as version 1. Writing that back is refused (see set_iam_policy).
            shown = []
            for b in out["bindings"]:
                if "condition" in b:
                    digest = hashlib.sha1(json.dumps(b["condition"], sort_keys=True).encode())
                    b = {"role": "%s_withcond_%s" % (b["role"], digest.hexdigest()[:20]),
                         "members": b["members"]}
                shown.append(b)
            out = dict(out, version=1, bindings=shown)
        return out

    def set_iam_policy(self, resource, body, project, sa_exists):
        """setIamPolicy semantics: etag precondition, member checks, principal cap.

        sa_exists(email) -> bool tells whether a service account is visible now.
        """
        self.take_quota(project, "iam.writes")
        new = (body or {}).get("policy") or {}
        version = int(new.get("version") or 0)
        if version not in (0, 1, 3):
            raise ApiError(400, "Invalid policy version %d: valid versions are 0, 1 and 3."
                           % version)
        conditional = any(b.get("condition") for b in new.get("bindings") or [])
        if conditional and version != 3:
            raise ApiError(400, "A policy with conditional role bindings must be version 3.")
        if any("_withcond_" in (b.get("role") or "") for b in new.get("bindings") or []):
            raise ApiError(400, "Policy version 1 cannot express conditional role bindings; "
                           "read the policy with requestedPolicyVersion 3.")
        bindings = []
        total = 0
        for b in new.get("bindings") or []:
            members = list(b.get("members") or [])
            if not b.get("role"):
                raise ApiError(400, "Binding is missing a role.")
            if not members:
                continue  # Google drops bindings without members
            for member in members:
                self._check_member(member, sa_exists)
            total += len(members)
            nb = {"role": b["role"], "members": members}
            if b.get("condition"):
                nb["condition"] = b["condition"]
            bindings.append(nb)
        groups = sum(1 for b in bindings for m in b["members"] if m.startswith("group:"))
        if groups > MAX_POLICY_GROUPS:
            raise ApiError(400, "The number of groups in the policy (%d) is larger than the "
                           "maximum allowed size %d." % (groups, MAX_POLICY_GROUPS))
        if total > MAX_POLICY_PRINCIPALS:
            raise ApiError(400, "The number of members in the policy (%d) is larger than the "
                           "maximum allowed size %d." % (total, MAX_POLICY_PRINCIPALS))
        with self.lock:
            current = self.policy(resource)
            etag = new.get("etag")
            if etag and not _same_etag(etag, current.etag):
                raise ApiError(409, "There were concurrent policy changes. Please retry the "
                               "whole read-modify-write with exponential backoff.",
                               status="ABORTED")
            current.bindings = bindings
            current.version = 3 if conditional else 1
            current.etag = new_etag()
            return current.to_json()

    def _check_member(self, member, sa_exists):
        if member in SPECIAL_MEMBERS:
            return
        if not member.startswith(MEMBER_PREFIXES):
            raise ApiError(400, "Invalid principal: %s" % member)
        if member.startswith("serviceAccount:"):
            email = member[len("serviceAccount:"):]
            # Only user-managed accounts (…iam.gserviceaccount.com) live in our state; the
            # platform's own account and Google-managed agents always exist.
            if (email.endswith(".iam.gserviceaccount.com")
                    and "serviceAccount:" + email != self.platform_principal
                    and not sa_exists(email)):
                raise ApiError(400, "Service account %s does not exist." % email)

    # ---- quotas ---------------------------------------------------------------

    def take_quota(self, project, quota, key_suffix=""):
        """Token bucket per (project, quota): capacity = one minute's worth."""
        if not self.enforce_quotas:
            return
        per_minute = QUOTAS[quota] * self.quota_scale
        key = (project, quota + key_suffix)
        t = now()
        with self.lock:
            level, last = self.buckets.get(key, (per_minute, t))
            level = min(per_minute, level + (t - last) * per_minute / 60.0)
            if level >= 1.0:
                self.buckets[key] = (level - 1.0, t)
                return
            self.buckets[key] = (level, t)
            wait = (1.0 - level) * 60.0 / per_minute if per_minute > 0 else 60.0
            retry_after = max(1, int(math.ceil(wait)))
            self.quota_denials.append({"project": project, "quota": quota + key_suffix,
                                       "time": rfc3339(t), "retry_after": retry_after})
        raise ApiError(
            429, "Quota exceeded for quota metric '%s' and limit '%s per minute' of project "
            "'%s'." % (quota, QUOTAS[quota], project_number(project)),
            retry_after=retry_after,
            details=[
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                 "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
                 "metadata": {"quota_metric": quota, "consumer": "projects/" + project_number(project)}},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                 "retryDelay": "%ds" % retry_after},
            ])

    # ---- faults ---------------------------------------------------------------

    def add_fault(self, fault):
        with self.lock:
            self.faults.setdefault(fault["method"], []).append(dict(fault))

    def take_fault(self, method_id):
        with self.lock:
            queue = self.faults.get(method_id)
            if not queue:
                return None
            fault = queue[0]
            fault["times"] -= 1
            if fault["times"] <= 0:
                queue.pop(0)
            return dict(fault)

    # ---- logs -----------------------------------------------------------------

    def record_request(self, entry):
        with self.lock:
            self.requests.append(entry)

    def record_violation(self, entry):
        with self.lock:
            self.violations.append(entry)
