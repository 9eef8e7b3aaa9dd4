"""Cloud Scheduler v1, Service Usage v1 and Resource Manager v3 (the parts ledgerlake uses)."""

import copy
import re

from ..common import ApiError, now, listing, project_number, rfc3339
from ..world import Policy
from . import handler
from .iam import sa_exists
from .ops import get_operation, new_operation, operation_id, render_operation

# ---- Cloud Scheduler --------------------------------------------------------------

SCHEDULER_NAME_RE = re.compile(r"^projects/[^/]+/locations/[^/]+/jobs/[A-Za-z0-9_-]{1,500}$")
SCHEDULER_INPUT = ("description", "schedule", "timeZone", "httpTarget", "pubsubTarget",
                   "appEngineHttpTarget", "retryConfig", "attemptDeadline")


def _scheduler_project(world, name):
    return world.project_id(name.split("/")[1])


def _check_scheduler_job(world, body):
    if not body.get("schedule"):
        raise ApiError(400, "Job.schedule is required.")
    targets = [t for t in ("httpTarget", "pubsubTarget", "appEngineHttpTarget") if body.get(t)]
    if len(targets) != 1:
        raise ApiError(400, "Exactly one of httpTarget, pubsubTarget, appEngineHttpTarget "
                       "must be set.")
    http = body.get("httpTarget")
    if http:
        if not re.match(r"^https?://", http.get("uri") or ""):
            raise ApiError(400, "httpTarget.uri must be an http(s) URL.")
        oidc = http.get("oidcToken")
        if oidc:
            email = oidc.get("serviceAccountEmail") or ""
            if not email:
                raise ApiError(400, "oidcToken.serviceAccountEmail is required.")
            if email.endswith(".iam.gserviceaccount.com") and not sa_exists(world, email):
                raise ApiError(400, "Service account %s does not exist." % email)
        if http.get("oidcToken") and http.get("oauthToken"):
            raise ApiError(400, "Only one of oidcToken and oauthToken may be set.")


def _scheduler_job(world, name):
    with world.lock:
        job = world.scheduler_jobs.get(name)
    if job is None:
        raise ApiError(404, "Job not found.")
    return job


@handler("cloudscheduler.projects.locations.jobs.create")
def scheduler_create(world, call):
    parent = call.params["parent"]
    project = _scheduler_project(world, parent)
    world.require_platform(call.principal, "cloudscheduler.jobs.create", parent, project)
    body = call.body or {}
    name = body.get("name") or "%s/jobs/%s" % (parent, operation_id().replace("-", "")[:20])
    if not SCHEDULER_NAME_RE.match(name) or not name.startswith(parent + "/jobs/"):
        raise ApiError(400, "Job name %r must be %s/jobs/JOB_ID with JOB_ID made of letters, "
                       "numbers, hyphens or underscores." % (name, parent))
    _check_scheduler_job(world, body)
    with world.lock:
        if name in world.scheduler_jobs:
            raise ApiError(409, "Job %s already exists." % name)
        t = rfc3339(now())
        job = {"name": name, "state": "ENABLED", "userUpdateTime": t, "timeZone": "Etc/UTC",
               "attemptDeadline": "180s", "scheduleTime": t}
        for f in SCHEDULER_INPUT:
            if body.get(f) is not None:
                job[f] = copy.deepcopy(body[f])
        if job.get("httpTarget"):
            job["httpTarget"].setdefault("httpMethod", "POST")
        world.scheduler_jobs[name] = job
        return copy.deepcopy(job)


@handler("cloudscheduler.projects.locations.jobs.get")
def scheduler_get(world, call):
    name = call.params["name"]
    world.require_platform(call.principal, "cloudscheduler.jobs.get", name,
                           _scheduler_project(world, name))
    with world.lock:
        return copy.deepcopy(_scheduler_job(world, name))


@handler("cloudscheduler.projects.locations.jobs.list")
def scheduler_list(world, call):
    parent = call.params["parent"]
    world.require_platform(call.principal, "cloudscheduler.jobs.list", parent,
                           _scheduler_project(world, parent))
    with world.lock:
        items = [copy.deepcopy(j) for n, j in sorted(world.scheduler_jobs.items())
                 if n.startswith(parent + "/jobs/")]
    return listing("jobs", items, call, 500, 500)


@handler("cloudscheduler.projects.locations.jobs.patch")
def scheduler_patch(world, call):
    name = call.params["name"]
    world.require_platform(call.principal, "cloudscheduler.jobs.update", name,
                           _scheduler_project(world, name))
    job = _scheduler_job(world, name)
    body = call.body or {}
    mask = [f.strip() for f in (call.query.get("updateMask") or "").split(",") if f.strip()]
    with world.lock:
        updated = copy.deepcopy(job)
        fields = mask or [f for f in SCHEDULER_INPUT if f in body]
        for f in fields:
            top = f.split(".")[0]
            if top not in SCHEDULER_INPUT:
                raise ApiError(400, "Field %s cannot be updated." % f)
            if body.get(top) is None:
                updated.pop(top, None)
            else:
                updated[top] = copy.deepcopy(body[top])
        _check_scheduler_job(world, updated)
        updated["userUpdateTime"] = rfc3339(now())
        world.scheduler_jobs[name] = updated
        return copy.deepcopy(updated)


@handler("cloudscheduler.projects.locations.jobs.delete")
def scheduler_delete(world, call):
    name = call.params["name"]
    world.require_platform(call.principal, "cloudscheduler.jobs.delete", name,
                           _scheduler_project(world, name))
    _scheduler_job(world, name)
    with world.lock:
        world.scheduler_jobs.pop(name, None)
    return {}


def _scheduler_state(world, call, state, permission):
    name = call.params["name"]
    world.require_platform(call.principal, permission, name, _scheduler_project(world, name))
    job = _scheduler_job(world, name)
    with world.lock:
        job["state"] = state
        job["userUpdateTime"] = rfc3339(now())
        return copy.deepcopy(job)


@handler("cloudscheduler.projects.locations.jobs.pause")
def scheduler_pause(world, call):
    return _scheduler_state(world, call, "PAUSED", "cloudscheduler.jobs.pause")


@handler("cloudscheduler.projects.locations.jobs.resume")
def scheduler_resume(world, call):
    return _scheduler_state(world, call, "ENABLED", "cloudscheduler.jobs.enable")


@handler("cloudscheduler.projects.locations.jobs.run")
def scheduler_run(world, call):
    # Records the attempt; the target is not called (see README).
    name = call.params["name"]
    world.require_platform(call.principal, "cloudscheduler.jobs.run", name,
                           _scheduler_project(world, name))
    job = _scheduler_job(world, name)
    with world.lock:
        job["lastAttemptTime"] = rfc3339(now())
        job["status"] = {"code": 0}
        return copy.deepcopy(job)


# ---- Service Usage ----------------------------------------------------------------

SU_OP_METADATA = "type.googleapis.com/google.api.serviceusage.v1.OperationMetadata"
SU_ENABLE = "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse"
SU_BATCH = "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse"
SU_DISABLE = "type.googleapis.com/google.api.serviceusage.v1.DisableServiceResponse"
SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*\.[a-z]+$")
MAX_BATCH = 20  # "A single request can enable a maximum of 20 services."


def _su_parent(world, parent):
    kind, ref = parent.split("/")
    if kind != "projects":
        raise ApiError(400, "Only projects/* parents are reproduced here, not %s." % parent)
    return world.project_id(ref)


def _service_json(world, project, service):
    with world.lock:
        state = world.services.get((project, service), "DISABLED")
    number = project_number(project)
    return {"name": "projects/%s/services/%s" % (number, service),
            "parent": "projects/%s" % number, "state": state,
            "config": {"name": service, "title": service}}


def _su_operation(world, project, type_url, render, services):
    done_at = now() + world.lro_delay
    name = "operations/acat.p2-%s-%s" % (project_number(project), operation_id())
    return new_operation(world, name, type_url, render, lambda: now() >= done_at,
                         metadata=lambda: {"@type": SU_OP_METADATA,
                                           "resourceNames": ["services/%s/projectSettings/%s"
                                                             % (s, project_number(project))
                                                             for s in services]})


def _set_services(world, project, services, state):
    for s in services:
        if not SERVICE_RE.match(s):
            raise ApiError(400, "Invalid service name %r." % s)
    with world.lock:
        for s in services:
            world.services[(project, s)] = state


@handler("serviceusage.services.enable")
def su_enable(world, call):
    name = call.params["name"]
    parent, service = name.rsplit("/services/", 1)
    project = _su_parent(world, parent)
    world.require_platform(call.principal, "serviceusage.services.enable", name, project)
    with world.lock:
        already = world.services.get((project, service)) == "ENABLED"
    _set_services(world, project, [service], "ENABLED")
    if already:
        # Google answers an enable of an enabled service with a finished no-op operation.
        return {"name": "operations/noop.DONE_OPERATION", "done": True,
                "response": {"@type": SU_ENABLE, "service": _service_json(world, project, service)}}
    return _su_operation(world, project, SU_ENABLE,
                         lambda: {"service": _service_json(world, project, service)}, [service])


@handler("serviceusage.services.disable")
def su_disable(world, call):
    name = call.params["name"]
    parent, service = name.rsplit("/services/", 1)
    project = _su_parent(world, parent)
    world.require_platform(call.principal, "serviceusage.services.disable", name, project)
    _set_services(world, project, [service], "DISABLED")
    return _su_operation(world, project, SU_DISABLE,
                         lambda: {"service": _service_json(world, project, service)}, [service])


@handler("serviceusage.services.batchEnable")
def su_batch_enable(world, call):
    parent = call.params["parent"]
    project = _su_parent(world, parent)
    world.require_platform(call.principal, "serviceusage.services.enable", parent, project)
    ids = (call.body or {}).get("serviceIds") or []
    if not ids:
        raise ApiError(400, "serviceIds must not be empty.")
    if len(ids) > MAX_BATCH:
        raise ApiError(400, "A single request can enable at most %d services (got %d)."
                       % (MAX_BATCH, len(ids)))
    _set_services(world, project, ids, "ENABLED")
    return _su_operation(world, project, SU_BATCH,
                         lambda: {"services": [_service_json(world, project, s) for s in ids]},
                         ids)


@handler("serviceusage.services.get")
def su_get(world, call):
    name = call.params["name"]
    parent, service = name.rsplit("/services/", 1)
    project = _su_parent(world, parent)
    world.require(call.principal, "serviceusage.services.get", name, ["roles/viewer"], [],
                  project)
    return _service_json(world, project, service)


@handler("serviceusage.services.list")
def su_list(world, call):
    parent = call.params["parent"]
    project = _su_parent(world, parent)
    world.require(call.principal, "serviceusage.services.list", parent, ["roles/viewer"], [],
                  project)
    flt = (call.query.get("filter") or "").strip()
    if flt and flt not in ("state:ENABLED", "state:DISABLED"):
        raise ApiError(400, "Invalid filter %r." % flt)
    with world.lock:
        names = sorted(s for (p, s), st in world.services.items()
                       if p == project and (not flt or st == flt.split(":")[1]))
    items = [_service_json(world, project, s) for s in names]
    return listing("services", items, call, 50, 200)


@handler("serviceusage.operations.get")
def su_operation_get(world, call):
    name = call.params["name"]
    if name == "operations/noop.DONE_OPERATION":
        return {"name": name, "done": True}
    return render_operation(get_operation(world, name))


# ---- Resource Manager -------------------------------------------------------------


def _project_policy(world, project):
    """A project's policy starts with the platform principal as owner, like a real
    project whose creator owns it; read-modify-write must keep that binding."""
    resource = "projects/" + project
    with world.lock:
        if resource not in world.policies:
            world.policies[resource] = Policy(
                [{"role": "roles/owner", "members": [world.platform_principal]}])
    return resource


@handler("cloudresourcemanager.projects.get")
def crm_project_get(world, call):
    ref = call.params["name"].split("/")[1]
    project = world.project_id(ref)
    world.require(call.principal, "resourcemanager.projects.get", call.params["name"],
                  ["roles/viewer", "roles/browser"], [], project)
    return {"name": "projects/" + project_number(project), "projectId": project,
            "displayName": project, "state": "ACTIVE", "parent": "organizations/1000000000001",
            "createTime": "2024-01-01T00:00:00.000Z", "updateTime": "2024-01-01T00:00:00.000Z",
            "etag": "W/\"%s\"" % project_number(project)}


@handler("cloudresourcemanager.projects.getIamPolicy")
def crm_get_policy(world, call):
    project = world.project_id(call.params["resource"].split("/")[1])
    world.require(call.principal, "resourcemanager.projects.getIamPolicy",
                  call.params["resource"], ["roles/iam.securityReviewer",
                                            "roles/resourcemanager.projectIamAdmin"], [], project)
    requested = ((call.body or {}).get("options") or {}).get("requestedPolicyVersion")
    return world.get_iam_policy(_project_policy(world, project),
                                int(requested) if requested is not None else None)


@handler("cloudresourcemanager.projects.setIamPolicy")
def crm_set_policy(world, call):
    project = world.project_id(call.params["resource"].split("/")[1])
    world.require(call.principal, "resourcemanager.projects.setIamPolicy",
                  call.params["resource"], ["roles/resourcemanager.projectIamAdmin"], [], project)
    return world.set_iam_policy(_project_policy(world, project), call.body, project,
                                lambda email: sa_exists(world, email))
