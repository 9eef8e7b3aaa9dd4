"""Cloud Run Admin v2: jobs, executions, operations, and the optional executor.

Every execution gets a thread. Without --executor it sleeps --lro-delay and succeeds.
With --executor it runs the command once per task (sequentially; `parallelism` is
not reproduced), retrying failed tasks up to maxRetries, with the environment Cloud
Run would give the container.
"""

import copy
import os
import re
import shlex
import subprocess
import sys
import threading
import uuid

from ..common import ApiError, now, listing, project_number, quoted_etag, random_suffix, rfc3339
from . import handler
from .iam import sa_exists
from .ops import get_operation, new_operation, operation_id, wait_operation
from . import secretmanager

JOB_ID_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_JOBS_PER_REGION = 1000
JOB_TYPE = "type.googleapis.com/google.cloud.run.v2.Job"
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"
JOB_INPUT_FIELDS = ("labels", "annotations", "client", "clientVersion", "launchStage",
                    "binaryAuthorization", "template")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def _public(d):
    return {k: v for k, v in d.items() if not k.startswith("_")}


def _key(name):
    p = name.split("/")
    return p[1], p[3], p[5]


def _job(world, project, location, job_id):
    with world.lock:
        job = world.run_jobs.get((project, location, job_id))
    if job is None:
        raise ApiError(404, "Resource 'projects/%s/locations/%s/jobs/%s' was not found"
                       % (project, location, job_id))
    return job


def _job_json(job):
    out = _public(job)
    ready = job["_ready_at"] <= now()
    out["reconciling"] = not ready
    out["terminalCondition"] = {
        "type": "Ready",
        "state": "CONDITION_SUCCEEDED" if ready else "CONDITION_RECONCILING",
        "lastTransitionTime": rfc3339(job["_ready_at"] if ready else job["_changed_at"]),
    }
    out["observedGeneration"] = job["generation"] if ready else str(int(job["generation"]) - 1)
    if job.get("_latest_ex"):
        out["latestCreatedExecution"] = _reference(job["_latest_ex"])
    return out


def _check_template(world, body, where):
    template = body.get("template") or {}
    task = template.get("template") or {}
    containers = task.get("containers") or []
    if not containers:
        raise ApiError(400, "%s: template.template.containers must have at least one "
                       "container." % where)
    for c in containers:
        if not c.get("image"):
            raise ApiError(400, "%s: every container needs an image." % where)
    if (task.get("maxRetries") or 0) > 10:
        raise ApiError(400, "%s: maxRetries must be at most 10." % where)
    sa = task.get("serviceAccount")
    if sa and sa.endswith(".iam.gserviceaccount.com") and not sa_exists(world, sa):
        raise ApiError(400, "Service account %s does not exist." % sa)


def _with_defaults(template, project):
    """Cloud Run fills these in on create, and returns them on get."""
    t = copy.deepcopy(template)
    t.setdefault("taskCount", 1)
    t.setdefault("parallelism", 0)
    task = t.setdefault("template", {})
    task.setdefault("maxRetries", 3)
    task.setdefault("timeout", "600s")
    task.setdefault("serviceAccount", "%s-compute@developer.gserviceaccount.com"
                    % project_number(project))
    task.setdefault("executionEnvironment", "EXECUTION_ENVIRONMENT_GEN2")
    return t


def _job_operation(world, project, location, job_snapshot_fn, done_at):
    name = "projects/%s/locations/%s/operations/%s" % (project, location, operation_id())
    return new_operation(world, name, JOB_TYPE, job_snapshot_fn, lambda: now() >= done_at)


@handler("run.projects.locations.jobs.create")
def create(world, call):
    parent = call.params["parent"]
    _, project, _, location = parent.split("/")
    project = world.project_id(project)
    world.require_platform(call.principal, "run.jobs.create", parent, project)
    job_id = call.query.get("jobId")
    if not job_id:
        # The doc says the server generates one; we do the same.
        job_id = "job-" + random_suffix(8)
    if not JOB_ID_RE.match(job_id):
        raise ApiError(400, "job_id %r must be 1-63 lowercase letters, digits or hyphens, "
                       "starting with a letter." % job_id)
    body = call.body or {}
    _check_template(world, body, "Job")
    if call.query.get("validateOnly"):
        return _job_operation(world, project, location, lambda: {}, now())
    world.take_quota(project, "run.writes", "/" + location)
    with world.lock:
        if (project, location, job_id) in world.run_jobs:
            raise ApiError(409, "Resource '%s' already exists." % job_id)
        count = sum(1 for (p, l, _) in world.run_jobs if p == project and l == location)
        if count >= MAX_JOBS_PER_REGION:
            raise ApiError(429, "Quota exceeded: at most %d jobs per region in project %s."
                           % (MAX_JOBS_PER_REGION, project))
        t = now()
        job = {"name": "projects/%s/locations/%s/jobs/%s" % (project, location, job_id),
               "uid": str(uuid.uuid4()), "generation": "1", "createTime": rfc3339(t),
               "updateTime": rfc3339(t), "creator": call.principal.split(":", 1)[-1],
               "lastModifier": call.principal.split(":", 1)[-1], "launchStage": "GA",
               "etag": quoted_etag(), "executionCount": 0,
               "_ready_at": t + world.lro_delay, "_changed_at": t}
        for f in JOB_INPUT_FIELDS:
            if body.get(f) is not None:
                job[f] = copy.deepcopy(body[f])
        job["template"] = _with_defaults(body.get("template") or {}, project)
        world.run_jobs[(project, location, job_id)] = job
    return _job_operation(world, project, location, lambda: _job_json(job), job["_ready_at"])


@handler("run.projects.locations.jobs.get")
def get(world, call):
    project, location, job_id = _key(call.params["name"])
    project = world.project_id(project)
    world.require(call.principal, "run.jobs.get", call.params["name"],
                  ["roles/run.viewer", "roles/run.admin", "roles/viewer", "roles/editor"],
                  [], project)
    job = _job(world, project, location, job_id)
    with world.lock:
        return _job_json(job)


@handler("run.projects.locations.jobs.list")
def list_(world, call):
    _, project, _, location = call.params["parent"].split("/")
    project = world.project_id(project)
    world.require(call.principal, "run.jobs.list", call.params["parent"],
                  ["roles/run.viewer", "roles/run.admin", "roles/viewer", "roles/editor"],
                  [], project)
    with world.lock:
        items = [_job_json(j) for (p, l, _), j in sorted(world.run_jobs.items())
                 if p == project and (l == location or location == "-")]
    return listing("jobs", items, call, 100, 1000)


@handler("run.projects.locations.jobs.patch")
def patch(world, call):
    project, location, job_id = _key(call.params["name"])
    project = world.project_id(project)
    world.require_platform(call.principal, "run.jobs.update", call.params["name"], project)
    body = call.body or {}
    with world.lock:
        exists = (project, location, job_id) in world.run_jobs
    if not exists:
        if call.query.get("allowMissing"):
            call.params = {"parent": "projects/%s/locations/%s" % (project, location)}
            call.query = dict(call.query, jobId=job_id)
            return create(world, call)
        _job(world, project, location, job_id)
    _check_template(world, body, "Job")
    job = _job(world, project, location, job_id)
    if call.query.get("validateOnly"):
        return _job_operation(world, project, location, lambda: _job_json(job), now())
    world.take_quota(project, "run.writes", "/" + location)
    with world.lock:
        if body.get("etag") and body["etag"] != job["etag"]:
            raise ApiError(409, "The etag does not match the job's current etag.",
                           status="ABORTED")
        for f in JOB_INPUT_FIELDS:
            if f in job and f not in body:
                job.pop(f)
            if body.get(f) is not None:
                job[f] = copy.deepcopy(body[f])
        job["template"] = _with_defaults(body.get("template") or {}, project)
        t = now()
        job["generation"] = str(int(job["generation"]) + 1)
        job["updateTime"] = rfc3339(t)
        job["lastModifier"] = call.principal.split(":", 1)[-1]
        job["etag"] = quoted_etag()
        job["_changed_at"] = t
        job["_ready_at"] = t + world.lro_delay
    return _job_operation(world, project, location, lambda: _job_json(job), job["_ready_at"])


@handler("run.projects.locations.jobs.delete")
def delete(world, call):
    project, location, job_id = _key(call.params["name"])
    project = world.project_id(project)
    world.require_platform(call.principal, "run.jobs.delete", call.params["name"], project)
    job = _job(world, project, location, job_id)
    etag = call.query.get("etag")
    if etag and etag != job["etag"]:
        # Cloud Run follows AIP-154: a stale etag is ABORTED (409).
        raise ApiError(409, "The etag does not match the job's current etag.", status="ABORTED")
    if call.query.get("validateOnly"):
        return _job_operation(world, project, location, lambda: _job_json(job), now())
    world.take_quota(project, "run.writes", "/" + location)
    with world.lock:
        world.run_jobs.pop((project, location, job_id), None)
        snapshot = _job_json(job)
        snapshot["deleteTime"] = rfc3339(now())
        for name, ex in list(world.run_executions.items()):
            if ex["_job_name"] == job["name"]:
                _kill(world, name)
                world.run_executions.pop(name, None)
    return _job_operation(world, project, location, lambda: snapshot, now() + world.lro_delay)


@handler("run.projects.locations.jobs.getIamPolicy")
def get_policy(world, call):
    project, location, job_id = _key(call.params["resource"])
    project = world.project_id(project)
    world.require_platform(call.principal, "run.jobs.getIamPolicy", call.params["resource"], project)
    job = _job(world, project, location, job_id)
    return world.get_iam_policy(job["name"], call.query.get("options.requestedPolicyVersion"))


@handler("run.projects.locations.jobs.setIamPolicy")
def set_policy(world, call):
    project, location, job_id = _key(call.params["resource"])
    project = world.project_id(project)
    world.require_platform(call.principal, "run.jobs.setIamPolicy", call.params["resource"], project)
    job = _job(world, project, location, job_id)
    return world.set_iam_policy(job["name"], call.body, project,
                                lambda email: sa_exists(world, email))


# ---- executions ------------------------------------------------------------------


def _execution_json(ex):
    out = _public(ex)
    state = ex["_state"]
    t = ex["_changed"]
    completed = {"type": "Completed", "lastTransitionTime": rfc3339(t)}
    if state == "SUCCEEDED":
        completed["state"] = "CONDITION_SUCCEEDED"
    elif state in ("FAILED", "CANCELLED"):
        completed["state"] = "CONDITION_FAILED"
        completed["message"] = ex.get("_message", "")
        completed["executionReason"] = "CANCELLED" if state == "CANCELLED" else "NON_ZERO_EXIT_CODE"
    else:
        completed["state"] = "CONDITION_PENDING" if state == "PENDING" else "CONDITION_RECONCILING"
    started = {"type": "Started", "lastTransitionTime": rfc3339(t),
               "state": "CONDITION_PENDING" if state == "PENDING" else "CONDITION_SUCCEEDED"}
    out["conditions"] = [
        {"type": "ResourcesAvailable", "state": "CONDITION_SUCCEEDED",
         "lastTransitionTime": out["createTime"]},
        started, completed]
    out["reconciling"] = state not in TERMINAL
    return out


def _reference(ex):
    state = ex["_state"]
    ref = {"name": ex["name"], "createTime": ex["createTime"],
           "completionStatus": {"PENDING": "EXECUTION_PENDING", "RUNNING": "EXECUTION_RUNNING",
                                "SUCCEEDED": "EXECUTION_SUCCEEDED", "FAILED": "EXECUTION_FAILED",
                                "CANCELLED": "EXECUTION_CANCELLED"}[state]}
    if ex.get("completionTime"):
        ref["completionTime"] = ex["completionTime"]
    return ref


def _merge_env(base, overrides):
    env = [dict(e) for e in base or []]
    for o in overrides or []:
        env = [e for e in env if e.get("name") != o.get("name")]
        env.append(dict(o))
    return env


@handler("run.projects.locations.jobs.run")
def run(world, call):
    name = call.params["name"]
    project, location, job_id = _key(name)
    project = world.project_id(project)
    world.require(call.principal, "run.jobs.run", name, ["roles/run.invoker", "roles/run.admin",
                                                         "roles/run.developer", "roles/editor"],
                  [], project)
    job = _job(world, project, location, job_id)
    body = call.body or {}
    if body.get("etag") and body["etag"] != job["etag"]:
        raise ApiError(409, "The etag does not match the job's current etag.", status="ABORTED")
    with world.lock:
        template = copy.deepcopy(job["template"])
    task = template["template"]
    containers = task["containers"]
    overrides = body.get("overrides") or {}
    for co in overrides.get("containerOverrides") or []:
        target = containers[0] if not co.get("name") else next(
            (c for c in containers if c.get("name") == co["name"]), None)
        if target is None:
            raise ApiError(400, "overrides.containerOverrides: no container named %r."
                           % co["name"])
        if co.get("clearArgs"):
            target["args"] = []
        if co.get("args"):
            target["args"] = list(co["args"])
        if co.get("env"):
            target["env"] = _merge_env(target.get("env"), co["env"])
    task_count = overrides.get("taskCount") or template.get("taskCount") or 1
    if task_count < 1:
        raise ApiError(400, "overrides.taskCount must be at least 1.")
    if overrides.get("timeout"):
        task["timeout"] = overrides["timeout"]
    if body.get("validateOnly"):
        return new_operation(world, "projects/%s/locations/%s/operations/%s"
                             % (project, location, operation_id()), EXECUTION_TYPE,
                             lambda: {}, lambda: True)
    world.take_quota(project, "run.writes", "/" + location)
    t = now()
    ex_id = "%s-%s" % (job_id, random_suffix(5))
    ex = {"name": "%s/executions/%s" % (job["name"], ex_id), "uid": str(uuid.uuid4()),
          "generation": "1", "observedGeneration": "1", "createTime": rfc3339(t),
          "job": job_id, "launchStage": "GA", "taskCount": task_count,
          "parallelism": template.get("parallelism") or 0, "template": task,
          "runningCount": 0, "succeededCount": 0, "failedCount": 0, "cancelledCount": 0,
          "retriedCount": 0, "etag": quoted_etag(),
          "logUri": "http://127.0.0.1/logs/%s" % ex_id,
          "_state": "PENDING", "_changed": t, "_job_name": job["name"], "_project": project,
          "_cancel": threading.Event()}
    if template.get("labels"):
        ex["labels"] = dict(template["labels"])
    with world.lock:
        world.run_executions[ex["name"]] = ex
        job["executionCount"] = job.get("executionCount", 0) + 1
        job["_latest_ex"] = ex
    threading.Thread(target=_execute, args=(world, ex), daemon=True,
                     name="execution " + ex_id).start()
    return new_operation(world, "projects/%s/locations/%s/operations/%s"
                         % (project, location, operation_id()), EXECUTION_TYPE,
                         lambda: _snapshot(world, ex),
                         lambda: ex["_state"] in TERMINAL)


def _snapshot(world, ex):
    with world.lock:
        return _execution_json(ex)


def _set(world, ex, **fields):
    with world.lock:
        if ex["_state"] == "CANCELLED":
            return False
        for k, v in fields.items():
            ex[k] = v
        ex["_changed"] = now()
        if ex["_state"] in TERMINAL and "completionTime" not in ex:
            ex["completionTime"] = rfc3339(ex["_changed"])
        return True


def _execute(world, ex):
    _set(world, ex, _state="RUNNING", startTime=rfc3339(now()), runningCount=1)
    if not world.executor:
        if ex["_cancel"].wait(world.lro_delay):
            return
        _set(world, ex, _state="SUCCEEDED", runningCount=0, succeededCount=ex["taskCount"])
        return
    try:
        env = _container_env(world, ex)
    except ApiError as e:
        # Cloud Run fails the execution when a secret cannot be read by the job's account.
        _set(world, ex, _state="FAILED", runningCount=0, failedCount=ex["taskCount"],
             _message="Failed to resolve the container environment: %s" % e.message)
        _log(ex, "not started: %s" % e.message)
        return
    task = ex["template"]
    container = task["containers"][0]
    argv = shlex.split(world.executor) + list(container.get("args") or [])
    timeout = float(task.get("timeout", "600s").rstrip("s"))
    retries = task.get("maxRetries", 3)
    for index in range(ex["taskCount"]):
        ok = False
        for attempt in range(retries + 1):
            if ex["_cancel"].is_set():
                return
            task_env = dict(env, CLOUD_RUN_TASK_INDEX=str(index),
                            CLOUD_RUN_TASK_COUNT=str(ex["taskCount"]),
                            CLOUD_RUN_TASK_ATTEMPT=str(attempt))
            code = _spawn(world, ex, argv, task_env, timeout)
            if code == 0:
                ok = True
                break
            if attempt < retries:
                with world.lock:
                    ex["retriedCount"] += 1
        if ex["_cancel"].is_set():
            return
        with world.lock:
            if ok:
                ex["succeededCount"] += 1
            else:
                ex["failedCount"] += 1
    with world.lock:
        failed = ex["failedCount"]
    if failed:
        _set(world, ex, _state="FAILED", runningCount=0,
             _message="Task failed with a non-zero exit code (%d of %d tasks failed)."
             % (failed, ex["taskCount"]))
    else:
        _set(world, ex, _state="SUCCEEDED", runningCount=0)


def _container_env(world, ex):
    """The environment Cloud Run gives the container, plus a token for the job's account.

    The child inherits the server's own environment (PATH, and the local emulators'
    endpoints the developer set), then the template's env on top.
    """
    task = ex["template"]
    container = task["containers"][0]
    sa_email = task.get("serviceAccount")
    principal = "serviceAccount:" + sa_email
    env = dict(os.environ)
    for e in container.get("env") or []:
        ref = ((e.get("valueSource") or {}).get("secretKeyRef"))
        if ref:
            secret = ref.get("secret", "")
            m = re.match(r"^projects/([^/]+)/secrets/([^/]+)$", secret)
            project, secret_id = (world.project_id(m.group(1)), m.group(2)) if m \
                else (ex["_project"], secret)
            _, v = secretmanager.access_payload(world, principal, project, secret_id,
                                                ref.get("version") or "latest")
            env[e["name"]] = v["_data"].decode("utf-8", "replace")
        else:
            env[e["name"]] = e.get("value", "")
    if sa_email.endswith(".iam.gserviceaccount.com") and not sa_exists(world, sa_email):
        raise ApiError(400, "Service account %s does not exist." % sa_email)
    # Stands in for the metadata server: the job's own identity, one hour.
    token, _ = world.mint_token(principal, 3600.0)
    env["LEDGERLAKE_GCP_ACCESS_TOKEN"] = token
    env["CLOUD_RUN_JOB"] = ex["job"]
    env["CLOUD_RUN_EXECUTION"] = ex["name"].split("/")[-1]
    return env


def _log(ex, line):
    sys.stderr.write("[%s] %s\n" % (ex["name"].split("/")[-1], line))
    sys.stderr.flush()


def _spawn(world, ex, argv, env, timeout):
    try:
        child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        _log(ex, "executor failed to start: %s" % e)
        return 127
    with world.lock:
        world.children[ex["name"]] = child
    pumps = [threading.Thread(target=_pump, args=(ex, stream), daemon=True)
             for stream in (child.stdout, child.stderr)]
    for p in pumps:
        p.start()
    try:
        code = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _log(ex, "task timed out after %ss; killing it" % timeout)
        child.kill()
        code = child.wait()
    for p in pumps:
        p.join(timeout=5)
    with world.lock:
        world.children.pop(ex["name"], None)
    _log(ex, "exited with code %s" % code)
    return code


def _pump(ex, stream):
    for raw in iter(stream.readline, b""):
        _log(ex, raw.decode("utf-8", "replace").rstrip("\n"))
    stream.close()


def _kill(world, ex_name):
    with world.lock:
        child = world.children.get(ex_name)
    if child is not None and child.poll() is None:
        child.kill()


def kill_all(world):
    with world.lock:
        names = list(world.children)
    for name in names:
        _kill(world, name)


def _execution(world, name):
    with world.lock:
        ex = world.run_executions.get(name)
    if ex is None:
        raise ApiError(404, "Resource '%s' was not found" % name)
    return ex


@handler("run.projects.locations.jobs.executions.get")
def execution_get(world, call):
    project = world.project_id(call.params["name"].split("/")[1])
    world.require(call.principal, "run.executions.get", call.params["name"],
                  ["roles/run.viewer", "roles/run.admin", "roles/viewer", "roles/editor"],
                  [], project)
    return _snapshot(world, _execution(world, call.params["name"]))


@handler("run.projects.locations.jobs.executions.list")
def execution_list(world, call):
    parent = call.params["parent"]
    project = world.project_id(parent.split("/")[1])
    world.require(call.principal, "run.executions.list", parent,
                  ["roles/run.viewer", "roles/run.admin", "roles/viewer", "roles/editor"],
                  [], project)
    _job(world, *_key(parent))
    with world.lock:
        items = sorted((ex for ex in world.run_executions.values() if ex["_job_name"] == parent),
                       key=lambda ex: ex["createTime"], reverse=True)
        items = [_execution_json(ex) for ex in items]
    return listing("executions", items, call, 100, 1000)


@handler("run.projects.locations.jobs.executions.cancel")
def execution_cancel(world, call):
    name = call.params["name"]
    parts = name.split("/")
    project, location = world.project_id(parts[1]), parts[3]
    world.require_platform(call.principal, "run.executions.cancel", name, project)
    ex = _execution(world, name)
    with world.lock:
        if ex["_state"] in TERMINAL:
            raise ApiError(400, "Execution %s has already completed." % parts[-1],
                           status="FAILED_PRECONDITION")
        ex["_cancel"].set()
        ex["_state"] = "CANCELLED"
        ex["_message"] = "The execution was cancelled."
        ex["cancelledCount"] = ex["taskCount"] - ex["succeededCount"] - ex["failedCount"]
        ex["runningCount"] = 0
        ex["_changed"] = now()
        ex["completionTime"] = rfc3339(ex["_changed"])
    _kill(world, name)
    return new_operation(world, "projects/%s/locations/%s/operations/%s"
                         % (project, location, operation_id()), EXECUTION_TYPE,
                         lambda: _snapshot(world, ex), lambda: True)


@handler("run.projects.locations.operations.get")
def operation_get(world, call):
    from .ops import render_operation
    world.require(call.principal, "run.operations.get", call.params["name"],
                  ["roles/run.viewer", "roles/run.admin", "roles/viewer", "roles/editor"],
                  [], world.project_id(call.params["name"].split("/")[1]))
    return render_operation(get_operation(world, call.params["name"]))


@handler("run.projects.locations.operations.wait")
def operation_wait(world, call):
    from ..common import parse_duration
    world.require(call.principal, "run.operations.get", call.params["name"],
                  ["roles/run.viewer", "roles/run.admin", "roles/viewer", "roles/editor"],
                  [], world.project_id(call.params["name"].split("/")[1]))
    timeout = parse_duration((call.body or {}).get("timeout"), 60.0)
    return wait_operation(world, call.params["name"], timeout)


def state_dump(world):
    with world.lock:
        jobs = [_job_json(j) for j in world.run_jobs.values()]
        execs = [_execution_json(ex) for ex in world.run_executions.values()]
        return {"jobs": jobs, "executions": execs}
