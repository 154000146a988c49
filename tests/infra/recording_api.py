"""A local stand-in for the Google REST APIs that records every request and answers plausibly.

The real gcloud is pointed at it with ``CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>`` set to
``http://<api>.mock/`` and this server as its HTTP proxy (gcloud turns Cloud Run's endpoint
into a regional host name, ``<region>-run.mock``, which only a proxy can answer), so what
gcloud sends is exactly what it would send to Google: the test reads the recorded method,
path, query and JSON body of each request.

It answers as an empty project would, then remembers what it was given: a read of a
resource nobody created is a 404; a create (POST to a collection, PUT or PATCH of a
resource) stores the body under its name and answers it back (wrapped in a finished
long-running operation for the APIs that use them); ``getIamPolicy`` answers the policy
last set (empty at first), ``setIamPolicy`` stores it; ``testIamPermissions`` grants what
is asked; a list answers nothing; an upload URL points back here. Nothing is validated
beyond what a plausible answer needs: the checking is gcloud's, and the test's.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from tests.support.json_handler import JsonHandler

PROJECT_NUMBER = "123456789012"
# The API names gcloud's endpoint overrides use, and whether their writes are operations.
APIS = {
    "CLOUDFUNCTIONS": "operations",
    "CLOUDRESOURCEMANAGER": "",
    "CLOUDSCHEDULER": "",
    "FIRESTORE": "operations",
    "IAM": "",
    "LOGGING": "",
    "MONITORING": "",
    "PUBSUB": "",
    "RUN": "",
    "SECRETMANAGER": "",
    "SERVICEUSAGE": "operations",
    "STORAGE": "",
}


@dataclass
class Request:
    api: str
    method: str
    path: str  # without the API's prefix and without the query
    query: dict[str, list[str]]
    body: Any

    def verb(self) -> str:
        """The custom method (``setIamPolicy``) or the HTTP method."""
        last = self.path.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else self.method


@dataclass
class Recorder:
    requests: list[Request] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    policies: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, api: str, verb: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.api == api and (verb is None or r.verb() == verb)]


class _Handler(JsonHandler):
    recorder: Recorder
    base: str

    def _handle(self) -> None:
        if self.path == "/__count":  # for gcloud_driver.py: how many requests so far
            self.send_json(200, len(self.recorder.requests))
            return
        parsed = urllib.parse.urlsplit(self.path)  # an absolute URL: this is a proxy
        api = (parsed.hostname or "").split(".")[0].rsplit("-", 1)[-1].upper()
        path = parsed.path or "/"
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = {"_bytes": len(raw)}  # an upload
        request = Request(api, self.command, path, urllib.parse.parse_qs(parsed.query), body)
        with self.recorder.lock:
            self.recorder.requests.append(request)
            status, answer = self._answer(request)
        self.send_json(status, answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _answer(self, r: Request) -> tuple[int, Any]:
        rec = self.recorder
        verb = r.verb()
        resource = r.path.rsplit(":", 1)[0] if ":" in r.path.rsplit("/", 1)[-1] else r.path
        if r.api == "UPLOAD":
            return 200, {}
        if verb == "getIamPolicy":
            return 200, rec.policies.get(resource, {"version": 1, "etag": "BwY="})
        if verb == "setIamPolicy":
            policy = dict((r.body or {}).get("policy", {}))
            policy.setdefault("etag", "BwY=")
            rec.policies[resource] = policy
            return 200, policy
        if verb == "testIamPermissions":
            return 200, {"permissions": (r.body or {}).get("permissions", [])}
        if verb == "generateUploadUrl":
            return 200, {
                "uploadUrl": "http://upload.mock/source.zip",
                "storageSource": {"bucket": "gcf-v2-uploads", "object": "source.zip"},
            }
        if r.api == "STORAGE" and r.path.endswith("/iam"):  # the JSON API's IAM policy
            key = r.path[: -len("/iam")]
            if r.method == "PUT":
                rec.policies[key] = r.body
            return 200, rec.policies.get(
                key, {"kind": "storage#policy", "bindings": [], "etag": "CAE="}
            )
        if r.method == "GET":
            segments = _name(r.path).split("/")
            if r.api == "CLOUDRESOURCEMANAGER" and len(segments) == 2:  # the project exists
                return 200, {"projectId": segments[1], "projectNumber": PROJECT_NUMBER}
            if r.api == "SERVICEUSAGE" and len(segments) == 4:  # the bootstrap enabled them
                return 200, {"name": _name(r.path), "state": "ENABLED"}
            if r.api == "CLOUDFUNCTIONS" and r.path.endswith("/runtimes"):
                return 200, {
                    "runtimes": [{"name": "python311", "stage": "GA", "environment": "GEN_2"}]
                }
            if "/operations/" in r.path:  # every operation is finished at once
                return 200, {"name": _name(r.path), "done": True, "metadata": {}}
            if _name(r.path) in rec.resources:
                found = rec.resources[_name(r.path)]
                return 200, _ready(found) if "/namespaces/" in r.path else found
            if _is_collection(r.path):
                return 200, {}
            return 404, {
                "error": {"code": 404, "status": "NOT_FOUND", "message": f"{r.path} not found"}
            }
        if r.method == "DELETE":
            rec.resources.pop(_name(r.path), None)
            return 200, {}
        return self._write(r, verb)

    def _write(self, r: Request, verb: str) -> tuple[int, Any]:
        rec = self.recorder
        body = dict(r.body or {}) if isinstance(r.body, dict) else {}
        if verb == "addVersion":  # Secret Manager: the new version
            return 200, {
                "name": f"{_name(r.path).rsplit(':', 1)[0]}/versions/1",
                "state": "ENABLED",
                "clientSpecifiedPayloadChecksum": True,
            }
        if verb not in ("POST", "PUT", "PATCH"):  # :enable, :batchEnable, :undelete, ...
            response = rec.resources.get(_name(r.path).rsplit(":", 1)[0], body)
            return 200, _done(r, response) if APIS.get(r.api) == "operations" else response
        if r.method == "POST":  # a create in a collection: the id is in the query or body
            ids = [v[0] for k, v in r.query.items() if k.endswith("Id") and v]
            name = body.get("name") or (f"{_name(r.path)}/{ids[0]}" if ids else "")
            if r.api == "STORAGE" and "name" in body:
                name = f"b/{body['name']}"
            if not name:
                name = f"{_name(r.path)}/generated-{len(rec.requests)}"
        else:
            name = _name(r.path)
        stored = {**rec.resources.get(name, {}), **body}
        stored.setdefault("name", name)
        if r.api == "CLOUDFUNCTIONS":
            stored.setdefault("state", "ACTIVE")
            config = stored.setdefault("serviceConfig", {})
            short, project, location = (
                name.rsplit("/", 1)[-1],
                name.split("/")[1],
                name.split("/")[3],
            )
            config.setdefault("uri", f"https://{short}-recorded-ew.a.run.app")
            config.setdefault(
                "service", f"projects/{project}/locations/{location}/services/{short}"
            )
            # Cloud Functions runs it as a Cloud Run service of the same name.
            rec.resources[_knative(project, short)] = {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "metadata": {"name": short, "namespace": project, "generation": 1},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "image": "recorded",
                                    "env": [
                                        {"name": k, "value": v}
                                        for k, v in config.get("environmentVariables", {}).items()
                                    ],
                                }
                            ]
                        }
                    }
                },
            }
        if r.api == "RUN" and "/namespaces/" in name:  # a new revision of a Cloud Run service
            metadata = stored.setdefault("metadata", {})
            metadata["generation"] = int(metadata.get("generation", 1)) + 1
        rec.resources[name] = stored
        if APIS.get(r.api) == "operations":
            return 200, _done(r, stored)
        return 200, stored


def _knative(project: str, service: str) -> str:
    """Where gcloud's Cloud Run commands (the v1 API) find a service."""
    return f"apis/serving.knative.dev/v1/namespaces/{project}/services/{service}"


def _ready(service: dict[str, Any]) -> dict[str, Any]:
    """A Cloud Run service as its API shows it once its latest revision serves everything."""
    metadata = service.get("metadata", {})
    generation = int(metadata.get("generation", 1))
    revision = f"{metadata.get('name', 'service')}-{generation:05d}-rec"
    return {
        **service,
        "status": {
            "observedGeneration": generation,
            "conditions": [
                {"type": kind, "status": "True"}
                for kind in ("Ready", "ConfigurationsReady", "RoutesReady")
            ],
            "latestReadyRevisionName": revision,
            "latestCreatedRevisionName": revision,
            "traffic": [{"revisionName": revision, "percent": 100, "latestRevision": True}],
            "url": f"https://{metadata.get('name', 'service')}-recorded-ew.a.run.app",
        },
    }


def _name(path: str) -> str:
    """A resource's name from its path: without the leading API version (v1, v2, v3)."""
    segments = [s for s in path.split("/") if s]
    if segments and segments[0] in ("v1", "v1beta1", "v1beta", "v2", "v3", "storage"):
        segments = segments[1:]
        if segments and segments[0] == "v1":  # storage/v1/b/...
            segments = segments[1:]
    return "/".join(segments)


def _is_collection(path: str) -> bool:
    """A list request: the path ends in a collection name (an even number of segments after
    the version, ``v1/projects/p/topics``), or in a custom list method."""
    segments = [s for s in path.split("/") if s][1:]
    return len(segments) % 2 == 1 or path.endswith(("/services", "/b"))


def _done(r: Request, response: Any) -> dict[str, Any]:
    """A finished operation, named under the resource's location or database as the API does."""
    segments = _name(r.path).split("/")
    prefix = ""
    for i in range(len(segments) - 1):
        if segments[i] in ("locations", "databases"):
            prefix = "/".join(segments[: i + 2]) + "/"
    name = f"{prefix}operations/recorded-{r.verb().lower()}"
    # Firestore's commands print the operation's metadata (IndexOperationMetadata and kin).
    metadata = {"state": "PROCESSING"} if r.api == "FIRESTORE" else {}
    return {"name": name, "done": True, "response": response, "metadata": metadata}


class RecordingApi:
    """Serve on a free port of 127.0.0.1 until ``close``."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/"
        handler = type("Handler", (_Handler,), {"recorder": self.recorder, "base": self.base})
        self.server.RequestHandlerClass = handler
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def count_url(self) -> str:
        """Asked directly, not through the proxy."""
        return f"{self.base}__count"

    def overrides(self) -> dict[str, str]:
        """The environment that points every API of gcloud here."""
        port = str(self.server.server_address[1])
        env = {
            f"CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}": f"http://{api.lower()}.mock/" for api in APIS
        }
        env.update(
            CLOUDSDK_PROXY_TYPE="http", CLOUDSDK_PROXY_ADDRESS="127.0.0.1", CLOUDSDK_PROXY_PORT=port
        )
        return env

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
