"""Handlers for the discovery methods the contract server implements, by method id.

A method the documents describe but no handler implements answers 501 UNIMPLEMENTED:
the request was valid, the server just does not reproduce that part of Google.
"""

HANDLERS = {}


def handler(*method_ids):
    def register(fn):
        for method_id in method_ids:
            HANDLERS[method_id] = fn
        return fn
    return register


class Call:
    """One authenticated, contract-checked request."""

    def __init__(self, api, method, params, query, body, principal):
        self.api = api          # short name: iam, run, ...
        self.method = method    # discovery.Method
        self.params = params    # path parameters, percent-decoded
        self.query = query      # query parameters, typed
        self.body = body        # parsed JSON body or None
        self.principal = principal


def load_all():
    # Importing the modules registers their handlers.
    from . import iam, secretmanager, run, misc  # noqa: F401
    return HANDLERS
