"""IAM v1 service accounts and IAM Credentials generateAccessToken."""

import random
import re

from ..common import ApiError, now, listing, parse_duration, rfc3339
from . import handler

MAX_SERVICE_ACCOUNTS = 100  # Google's default per-project cap
ACCOUNT_ID_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")  # from accountId's description
MAX_TOKEN_LIFETIME = 3600.0  # without the org policy that extends it to 12 h


def sa_exists(world, email):
    """Visible to policy checks and token minting (eventual consistency)."""
    with world.lock:
        sa = world.service_accounts.get(email)
        return sa is not None and sa["_visible_at"] <= now()


def public(sa):
    return {k: v for k, v in sa.items() if not k.startswith("_")}


def find_sa(world, name):
    """`projects/{p|-}/serviceAccounts/{email|uniqueId}` -> account, honouring visibility."""
    m = re.match(r"^projects/([^/]+)/serviceAccounts/([^/]+)$", name)
    project, key = m.group(1), m.group(2)
    with world.lock:
        sa = world.service_accounts.get(key)
        if sa is None:
            sa = next((s for s in world.service_accounts.values() if s["uniqueId"] == key), None)
        if sa is not None and project != "-" and world.project_id(project) != sa["projectId"]:
            sa = None
        if sa is None or sa["_visible_at"] > now():
            # Newly created accounts are invisible for --sa-visibility-delay seconds.
            raise ApiError(404, "Unknown service account")
        return sa


def authorize(world, call, name, permission, roles=()):
    """Permission before existence (as Google: a caller without it cannot tell whether
    the account exists). `projects/-/…/{email}` takes the project from the email."""
    _, project, _, key = name.split("/")
    m = re.match(r"^[^@]+@([^.]+)\.iam\.gserviceaccount\.com$", key)
    if project == "-" and m:
        project = m.group(1)
    project = world.project_id(project)
    resource = "projects/%s/serviceAccounts/%s" % (project, key)
    if list(roles):
        world.require(call.principal, permission, name, list(roles), [resource], project)
    else:
        world.require_platform(call.principal, permission, name, project)


@handler("iam.projects.serviceAccounts.create")
def create(world, call):
    project = world.project_id(call.params["name"].split("/")[1])
    world.require_platform(call.principal, "iam.serviceAccounts.create",
                           "projects/" + project, project)
    body = call.body or {}
    account_id = body.get("accountId")
    if not account_id or not (6 <= len(account_id) <= 30) or not ACCOUNT_ID_RE.match(account_id):
        raise ApiError(400, "accountId %r must be 6-30 characters long and match the regular "
                       "expression `[a-z]([-a-z0-9]*[a-z0-9])`." % account_id, violation=True)
    world.take_quota(project, "iam.writes")
    email = "%s@%s.iam.gserviceaccount.com" % (account_id, project)
    with world.lock:
        if email in world.service_accounts:
            raise ApiError(409, "Service account %s already exists within project "
                           "projects/%s." % (account_id, project))
        count = sum(1 for s in world.service_accounts.values() if s["projectId"] == project)
        if count >= MAX_SERVICE_ACCOUNTS:
            # Google answers the per-project cap with 429 RESOURCE_EXHAUSTED ("Maximum
            # number of service accounts on project reached"), not FAILED_PRECONDITION.
            # No Retry-After: waiting does not help, deleting accounts does.
            raise ApiError(429, "Maximum number of service accounts on project reached.")
        template = body.get("serviceAccount") or {}
        unique_id = str(random.randint(10 ** 20, 10 ** 21 - 1))
        sa = {
            "name": "projects/%s/serviceAccounts/%s" % (project, email),
            "projectId": project,
            "uniqueId": unique_id,
            "email": email,
            "oauth2ClientId": unique_id,
            "etag": "MDEwMjE5MjA=",
            "_visible_at": now() + world.sa_visibility_delay,
        }
        for key in ("displayName", "description"):
            if template.get(key):
                sa[key] = template[key]
        world.service_accounts[email] = sa
        return public(sa)


@handler("iam.projects.serviceAccounts.get")
def get(world, call):
    authorize(world, call, call.params["name"], "iam.serviceAccounts.get")
    return public(find_sa(world, call.params["name"]))


@handler("iam.projects.serviceAccounts.list")
def list_(world, call):
    project = world.project_id(call.params["name"].split("/")[1])
    world.require_platform(call.principal, "iam.serviceAccounts.list", "projects/" + project,
                           project)
    with world.lock:
        items = sorted((public(s) for s in world.service_accounts.values()
                        if s["projectId"] == project and s["_visible_at"] <= now()),
                       key=lambda s: s["email"])
    return listing("accounts", items, call, 20, 100)


@handler("iam.projects.serviceAccounts.delete")
def delete(world, call):
    authorize(world, call, call.params["name"], "iam.serviceAccounts.delete")
    sa = find_sa(world, call.params["name"])
    world.take_quota(sa["projectId"], "iam.writes")
    with world.lock:
        world.service_accounts.pop(sa["email"], None)
        world.policies.pop(sa["name"], None)
    return {}


def _toggle(world, call, disabled):
    authorize(world, call, call.params["name"],
              "iam.serviceAccounts.%s" % ("disable" if disabled else "enable"))
    sa = find_sa(world, call.params["name"])
    world.take_quota(sa["projectId"], "iam.writes")
    with world.lock:
        if disabled:
            sa["disabled"] = True
        else:
            sa.pop("disabled", None)
    return {}


@handler("iam.projects.serviceAccounts.disable")
def disable(world, call):
    return _toggle(world, call, True)


@handler("iam.projects.serviceAccounts.enable")
def enable(world, call):
    return _toggle(world, call, False)


@handler("iam.projects.serviceAccounts.getIamPolicy")
def get_policy(world, call):
    authorize(world, call, call.params["resource"], "iam.serviceAccounts.getIamPolicy",
              ["roles/iam.securityAdmin", "roles/iam.securityReviewer"])
    sa = find_sa(world, call.params["resource"])
    return world.get_iam_policy(sa["name"], call.query.get("options.requestedPolicyVersion"))


@handler("iam.projects.serviceAccounts.setIamPolicy")
def set_policy(world, call):
    authorize(world, call, call.params["resource"], "iam.serviceAccounts.setIamPolicy",
              ["roles/iam.securityAdmin"])
    sa = find_sa(world, call.params["resource"])
    return world.set_iam_policy(sa["name"], call.body, sa["projectId"],
                                lambda email: sa_exists(world, email))


@handler("iamcredentials.projects.serviceAccounts.generateAccessToken")
def generate_access_token(world, call):
    name = call.params["name"]
    email = name.split("/")[-1]
    label = "projects/-/serviceAccounts/%s" % email
    with world.lock:
        sa = world.service_accounts.get(email)
        project = sa["projectId"] if sa else "-"
        resources = [sa["name"]] if sa else []
    # Permission first, as Google does: without it the caller cannot tell whether the
    # account exists.
    world.require(call.principal, "iam.serviceAccounts.getAccessToken", label,
                  ["roles/iam.serviceAccountTokenCreator"], resources, project)
    if sa is None or sa["_visible_at"] > now():
        raise ApiError(404, "Requested entity was not found.")
    if sa.get("disabled"):
        raise ApiError(400, "Service account %s is disabled." % email, status="FAILED_PRECONDITION")
    body = call.body or {}
    if not body.get("scope"):
        raise ApiError(400, "Scope required.", violation=True)
    lifetime = parse_duration(body.get("lifetime"), 3600.0)
    if not 0 < lifetime <= MAX_TOKEN_LIFETIME:
        raise ApiError(400, "The lifetime %s is outside the allowed range (at most %ds)."
                       % (body.get("lifetime"), MAX_TOKEN_LIFETIME))
    world.take_quota(project, "iamcredentials.generate")
    token, expiry = world.mint_token("serviceAccount:" + email, lifetime)
    return {"accessToken": token, "expireTime": rfc3339(expiry).replace(".000000", "")}
