"""Long-running operations shared by Cloud Run and Service Usage.

An operation renders itself from the live resource each time it is read, so
`metadata` shows progress and `response` appears once `done()` turns true.
"""

import time
import uuid

from ..common import ApiError, GRPC_CODES


def new_operation(world, name, type_url, render, done, error=None, metadata=None):
    """render() -> resource JSON; done() -> bool; error() -> (status, message) or None;
    metadata() -> metadata JSON (defaults to the resource, as Cloud Run does)."""
    op = {"name": name, "_type": type_url, "_render": render, "_done": done,
          "_error": error or (lambda: None), "_metadata": metadata}
    with world.lock:
        world.operations[name] = op
    return render_operation(op)


def operation_id():
    return str(uuid.uuid4())


def render_operation(op):
    resource = op["_render"]()
    typed = {"@type": op["_type"]}
    typed.update(resource)
    out = {"name": op["name"]}
    out["metadata"] = op["_metadata"]() if op["_metadata"] else typed
    if op["_done"]():
        out["done"] = True
        err = op["_error"]()
        if err:
            status, message = err
            out["error"] = {"code": GRPC_CODES[status], "message": message}
        else:
            out["response"] = typed
    return out


def get_operation(world, name):
    with world.lock:
        op = world.operations.get(name)
    if op is None:
        raise ApiError(404, "Operation %s not found." % name)
    return op


def wait_operation(world, name, timeout):
    op = get_operation(world, name)
    deadline = time.time() + min(timeout, 60.0)
    while not op["_done"]() and time.time() < deadline:
        time.sleep(0.05)
    return render_operation(op)
