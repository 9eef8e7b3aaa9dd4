"""Secret Manager v1 (global secrets: `projects/*/secrets/*`).

Names in responses carry the project NUMBER, as Google's do
(`projects/123456789012/secrets/foo`); requests may use the id or the number.
"""

import base64
import re
import shlex

from ..common import (ApiError, b64decode_any, crc32c, now, listing, parse_duration,
                      project_number, quoted_etag, rfc3339)
from . import handler
from .iam import sa_exists

SECRET_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

ACCESSOR_ROLES = ["roles/secretmanager.secretAccessor", "roles/secretmanager.admin"]
ADDER_ROLES = ["roles/secretmanager.secretVersionAdder",
               "roles/secretmanager.secretVersionManager", "roles/secretmanager.admin"]
ADMIN_ROLES = ["roles/secretmanager.admin", "roles/editor"]


def _split(name):
    """projects/{p}/secrets/{s}[/versions/{v}] -> (project id, secret id, version or None)."""
    parts = name.split("/")
    return parts[1], parts[3], (parts[5] if len(parts) > 5 else None)


def _canonical(project, secret_id):
    return "projects/%s/secrets/%s" % (project_number(project), secret_id)


def _secret(world, project, secret_id):
    with world.lock:
        s = world.secrets.get((project, secret_id))
    if s is None:
        raise ApiError(404, "Secret [%s] not found or has no versions."
                       % _canonical(project, secret_id))
    return s


def _public(d):
    return {k: v for k, v in d.items() if not k.startswith("_")}


def _check_etag(given, current, what):
    # The doc says only that the request succeeds when the etag matches. Google's error
    # model answers failed preconditions with FAILED_PRECONDITION, which maps to HTTP
    # 400 (not 412, which is Cloud Storage's XML/JSON `conditionNotMet`).
    if given and given != current:
        raise ApiError(400, "The etag provided in the request (%s) does not match the "
                       "current etag of the %s (%s)." % (given, what, current),
                       status="FAILED_PRECONDITION")


def _policy_resource(project, secret_id):
    return "projects/%s/secrets/%s" % (project, secret_id)


@handler("secretmanager.projects.secrets.create")
def create(world, call):
    project = world.project_id(call.params["parent"].split("/")[1])
    secret_id = call.query.get("secretId", "")
    world.require(call.principal, "secretmanager.secrets.create", "projects/" + project,
                  ADMIN_ROLES, [], project)
    if not SECRET_ID_RE.match(secret_id):
        raise ApiError(400, "secret_id %r must be 1-255 letters, numerals, hyphens or "
                       "underscores." % secret_id, violation=True)
    body = call.body or {}
    replication = body.get("replication")
    # The doc calls replication "Optional" because regional secrets have none; a global
    # secret without one is refused by Google.
    if not replication or not (replication.get("automatic") is not None
                               or replication.get("userManaged")):
        raise ApiError(400, "Secret.replication is required for global secrets.")
    with world.lock:
        if (project, secret_id) in world.secrets:
            raise ApiError(409, "Secret [%s] already exists." % _canonical(project, secret_id))
        secret = {"name": _canonical(project, secret_id), "replication": replication,
                  "createTime": rfc3339(now()), "etag": quoted_etag(), "_versions": [],
                  "_project": project, "_id": secret_id}
        for key in ("labels", "annotations", "topics", "ttl", "expireTime", "rotation",
                    "versionAliases", "versionDestroyTtl", "tags"):
            if body.get(key) is not None:
                secret[key] = body[key]
        if secret.get("ttl"):
            # Google keeps a ttl as the expireTime it implies.
            secret["expireTime"] = rfc3339(now() + parse_duration(secret.pop("ttl")))
        world.secrets[(project, secret_id)] = secret
        return _public(secret)


@handler("secretmanager.projects.secrets.get")
def get(world, call):
    project, secret_id, _ = _split(call.params["name"])
    project = world.project_id(project)
    world.require(call.principal, "secretmanager.secrets.get", call.params["name"],
                  ADMIN_ROLES + ["roles/secretmanager.viewer"],
                  [_policy_resource(project, secret_id)], project)
    return _public(_secret(world, project, secret_id))


def _parse_filter(text):
    """Secret Manager list filters: `labels.k=v`, `labels.k:v`, `labels.k:*`, `name:x`,
    terms joined by spaces or AND. Returns predicates on a secret."""
    preds = []
    try:
        tokens = shlex.split(text or "")
    except ValueError:
        raise ApiError(400, "Invalid filter %r." % text)
    for tok in tokens:
        if tok == "AND":
            continue
        m = re.match(r"^(labels\.[A-Za-z0-9_-]+|name)\s*(=|:)\s*(.*)$", tok)
        if not m:
            raise ApiError(400, "Invalid filter %r: unsupported term %r." % (text, tok))
        field, op, value = m.groups()
        if field == "name":
            preds.append(lambda s, v=value: v in s["_id"])
        else:
            key = field[len("labels."):]
            if op == ":" and value == "*":
                preds.append(lambda s, k=key: k in (s.get("labels") or {}))
            elif op == ":":
                preds.append(lambda s, k=key, v=value: v in (s.get("labels") or {}).get(k, ""))
            else:
                preds.append(lambda s, k=key, v=value: (s.get("labels") or {}).get(k) == v)
    return preds


@handler("secretmanager.projects.secrets.list")
def list_(world, call):
    project = world.project_id(call.params["parent"].split("/")[1])
    world.require(call.principal, "secretmanager.secrets.list", "projects/" + project,
                  ADMIN_ROLES + ["roles/secretmanager.viewer"], [], project)
    preds = _parse_filter(call.query.get("filter"))
    with world.lock:
        items = [_public(s) for (p, _), s in sorted(world.secrets.items())
                 if p == project and all(f(s) for f in preds)]
    return listing("secrets", items, call, 25000, 25000, totalSize=len(items))


@handler("secretmanager.projects.secrets.patch")
def patch(world, call):
    project, secret_id, _ = _split(call.params["name"])
    project = world.project_id(project)
    world.require(call.principal, "secretmanager.secrets.update", call.params["name"],
                  ADMIN_ROLES, [_policy_resource(project, secret_id)], project)
    secret = _secret(world, project, secret_id)
    body = call.body or {}
    with world.lock:
        _check_etag(body.get("etag"), secret["etag"], "secret")
        for field in call.query.get("updateMask", "").split(","):
            field = field.strip()
            if not field:
                continue
            if field in ("replication", "name", "createTime"):
                raise ApiError(400, "Field %s cannot be updated." % field)
            top = field.split(".")[0]
            if top not in ("labels", "annotations", "topics", "expireTime", "ttl", "rotation",
                           "versionAliases", "versionDestroyTtl"):
                raise ApiError(400, "Unknown field in update_mask: %s." % field)
            if body.get(top) is None:
                secret.pop(top, None)
            else:
                secret[top] = body[top]
        secret["etag"] = quoted_etag()
        return _public(secret)


@handler("secretmanager.projects.secrets.delete")
def delete(world, call):
    project, secret_id, _ = _split(call.params["name"])
    project = world.project_id(project)
    world.require(call.principal, "secretmanager.secrets.delete", call.params["name"],
                  ADMIN_ROLES, [_policy_resource(project, secret_id)], project)
    secret = _secret(world, project, secret_id)
    with world.lock:
        _check_etag(call.query.get("etag"), secret["etag"], "secret")
        world.secrets.pop((project, secret_id), None)
        world.policies.pop(_policy_resource(project, secret_id), None)
    return {}


@handler("secretmanager.projects.secrets.getIamPolicy")
def get_policy(world, call):
    project, secret_id, _ = _split(call.params["resource"])
    project = world.project_id(project)
    world.require(call.principal, "secretmanager.secrets.getIamPolicy", call.params["resource"],
                  ADMIN_ROLES, [_policy_resource(project, secret_id)], project)
    _secret(world, project, secret_id)
    return world.get_iam_policy(_policy_resource(project, secret_id),
                                call.query.get("options.requestedPolicyVersion"))


@handler("secretmanager.projects.secrets.setIamPolicy")
def set_policy(world, call):
    project, secret_id, _ = _split(call.params["resource"])
    project = world.project_id(project)
    world.require(call.principal, "secretmanager.secrets.setIamPolicy", call.params["resource"],
                  ["roles/secretmanager.admin"], [_policy_resource(project, secret_id)], project)
    _secret(world, project, secret_id)
    return world.set_iam_policy(_policy_resource(project, secret_id), call.body, project,
                                lambda email: sa_exists(world, email))


# ---- versions ------------------------------------------------------------------


def _version_json(secret, v):
    out = {"name": "%s/versions/%d" % (secret["name"], v["_n"]), "createTime": v["createTime"],
           "state": v["state"], "etag": v["etag"],
           "replicationStatus": {"automatic": {}},
           "clientSpecifiedPayloadChecksum": v["_client_crc"]}
    if v.get("destroyTime"):
        out["destroyTime"] = v["destroyTime"]
    return out


def _resolve_version(secret, ref, enabled_only_latest=True):
    """`latest` = the newest ENABLED version (as the brief asks; the doc's prose says the
    most recently created one); a number; or a version alias."""
    versions = secret["_versions"]
    if ref == "latest":
        live = [v for v in versions if v["state"] == "ENABLED"]
        if not live:
            raise ApiError(404, "Secret Version [%s/versions/latest] not found." % secret["name"])
        return live[-1]
    aliases = secret.get("versionAliases") or {}
    if ref in aliases:
        ref = str(aliases[ref])
    if re.fullmatch(r"\d+", ref or ""):
        for v in versions:
            if v["_n"] == int(ref):
                return v
    raise ApiError(404, "Secret Version [%s/versions/%s] not found." % (secret["name"], ref))


@handler("secretmanager.projects.secrets.addVersion")
def add_version(world, call):
    project, secret_id, _ = _split(call.params["parent"])
    project = world.project_id(project)
    world.require(call.principal, "secretmanager.versions.add", call.params["parent"],
                  ADDER_ROLES, [_policy_resource(project, secret_id)], project)
    secret = _secret(world, project, secret_id)
    payload = (call.body or {}).get("payload") or {}
    if "data" not in payload:
        raise ApiError(400, "Secret Payload cannot be empty.")
    data = b64decode_any(payload["data"])
    if len(data) > 64 * 1024:
        raise ApiError(400, "Secret Payload cannot be larger than 64KiB.")
    crc = crc32c(data)
    given = payload.get("dataCrc32c")
    if given is not None and int(given) != crc:
        raise ApiError(400, "Checksum mismatch: data corruption detected (dataCrc32c %s, "
                       "computed %d)." % (given, crc))
    with world.lock:
        n = len(secret["_versions"]) + 1
        v = {"_n": n, "createTime": rfc3339(now()), "state": "ENABLED", "etag": quoted_etag(),
             "_data": data, "_crc": crc, "_client_crc": given is not None}
        secret["_versions"].append(v)
        return _version_json(secret, v)


def _version_call(world, call, permission, roles):
    project, secret_id, ref = _split(call.params["name"])
    project = world.project_id(project)
    world.require(call.principal, permission, call.params["name"], roles,
                  [_policy_resource(project, secret_id)], project)
    secret = _secret(world, project, secret_id)
    return secret, _resolve_version(secret, ref)


@handler("secretmanager.projects.secrets.versions.get")
def version_get(world, call):
    secret, v = _version_call(world, call, "secretmanager.versions.get",
                              ADMIN_ROLES + ["roles/secretmanager.viewer"])
    return _version_json(secret, v)


@handler("secretmanager.projects.secrets.versions.list")
def version_list(world, call):
    project, secret_id, _ = _split(call.params["parent"])
    project = world.project_id(project)
    world.require(call.principal, "secretmanager.versions.list", call.params["parent"],
                  ADMIN_ROLES + ["roles/secretmanager.viewer"],
                  [_policy_resource(project, secret_id)], project)
    secret = _secret(world, project, secret_id)
    flt = call.query.get("filter") or ""
    m = re.fullmatch(r"\s*state\s*[:=]\s*(\w+)\s*", flt) if flt else None
    if flt and not m:
        raise ApiError(400, "Invalid filter %r (only state:STATE is supported here)." % flt)
    with world.lock:
        # Newest first, as Google lists versions.
        items = [_version_json(secret, v) for v in reversed(secret["_versions"])
                 if not m or v["state"] == m.group(1)]
    return listing("versions", items, call, 25000, 25000, totalSize=len(items))


def access_payload(world, principal, project, secret_id, ref):
    """Shared by versions.access and Cloud Run's secretKeyRef resolution."""
    label = "%s/versions/%s" % (_canonical(project, secret_id), ref)
    world.require(principal, "secretmanager.versions.access", label, ACCESSOR_ROLES,
                  [_policy_resource(project, secret_id)], project)
    world.take_quota(project, "secretmanager.access")
    secret = _secret(world, project, secret_id)
    with world.lock:
        v = _resolve_version(secret, ref)
        if v["state"] != "ENABLED":
            raise ApiError(400, "Secret Version [%s/versions/%d] is in %s state."
                           % (secret["name"], v["_n"], v["state"]),
                           status="FAILED_PRECONDITION")
        return secret, v


@handler("secretmanager.projects.secrets.versions.access")
def access(world, call):
    project, secret_id, ref = _split(call.params["name"])
    project = world.project_id(project)
    secret, v = access_payload(world, call.principal, project, secret_id, ref)
    return {"name": "%s/versions/%d" % (secret["name"], v["_n"]),
            "payload": {"data": base64.b64encode(v["_data"]).decode(),
                        "dataCrc32c": str(v["_crc"])}}


def _transition(world, call, permission, state):
    secret, v = _version_call(world, call, permission, ADMIN_ROLES +
                              ["roles/secretmanager.secretVersionManager"])
    with world.lock:
        _check_etag((call.body or {}).get("etag"), v["etag"], "secret version")
        if v["state"] == "DESTROYED" and state != "DESTROYED":
            raise ApiError(400, "Secret Version [%s/versions/%d] is in DESTROYED state."
                           % (secret["name"], v["_n"]), status="FAILED_PRECONDITION")
        if state == "DESTROYED":
            v["_data"] = b""
            v["destroyTime"] = rfc3339(now())
        v["state"] = state
        v["etag"] = quoted_etag()
        return _version_json(secret, v)


@handler("secretmanager.projects.secrets.versions.disable")
def disable(world, call):
    return _transition(world, call, "secretmanager.versions.disable", "DISABLED")


@handler("secretmanager.projects.secrets.versions.enable")
def enable(world, call):
    return _transition(world, call, "secretmanager.versions.enable", "ENABLED")


@handler("secretmanager.projects.secrets.versions.destroy")
def destroy(world, call):
    return _transition(world, call, "secretmanager.versions.destroy", "DESTROYED")


def state_dump(world):
    with world.lock:
        out = []
        for (project, _), s in sorted(world.secrets.items()):
            d = _public(s)
            d["projectId"] = project
            # Payloads are never dumped.
            d["versions"] = [_version_json(s, v) for v in s["_versions"]]
            out.append(d)
        return out
