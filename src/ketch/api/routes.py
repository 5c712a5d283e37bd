"""The route table: every endpoint module's ROUTES, served unversioned and under /v1.N/.

The endpoints live by resource (system, containers, images, ...); each parses its request,
calls the Engine in a worker thread (the event loop never blocks on the store or the
runtime) and answers in Docker's JSON shapes (moby's api/swagger.yaml, v1.45). A new
resource is a module with a ROUTES list, added to MODULES below.
"""

from __future__ import annotations

from ketch.api import (
    archive,
    attach_ws,
    build,
    containers,
    distribution,
    events,
    execs,
    images,
    networks,
    resources,
    system,
    volumes,
    web,
)
from ketch.api.common import SERVER, SVC, Service, errors_middleware

__all__ = ["Service", "make_app"]

MODULES = (system, containers, images, networks, volumes, build, distribution, execs, archive,
           resources, attach_ws, events)


def make_app(svc: Service) -> web.Application:
    # an unknown path is the application's 404 "page not found", through the middleware
    app = web.Application(middlewares=[errors_middleware], client_max_size=64 << 20,
                          server_header=SERVER)
    app[SVC] = svc
    for method, path, handler in (r for m in MODULES for r in m.ROUTES):
        # unversioned, and /v1.N/... for every version up to ketch's
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/v{ver:[0-9]+\.[0-9]+}" + path, handler)
    return app
