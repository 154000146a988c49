"""A stateful stand-in for the gcloud commands the infra scripts run, for what no emulator serves.

It keeps the project's resources (APIs, service accounts, IAM policies, the secret,
Firestore settings, functions and their Cloud Run services, the scheduler job, log-based
metrics, alert policies and dashboards) in a JSON
file, answers reads the way the Google APIs shape them, and prints them with gcloud's own
``--format`` and ``--filter`` code (``--flatten`` done as gcloud does it), so the scripts'
projections are read as the real CLI would read them. Every call is logged (argv, and a digest of stdin).
Pub/Sub is faked too (the emulator tests cover it with the real CLI), so a whole deploy
runs in seconds.

Unknown commands and malformed flags exit 2, like gcloud's argument errors, so a script
that calls something this fake does not know fails loudly instead of passing quietly.
Monitoring definitions (``--config-from-file``, ``--policy-from-file``) are read with
gcloud's own YAML loader into gcloud's own API message classes (``load_config``); a field
those do not know is refused, as the API refuses it. Like Cloud Monitoring, an alert policy
on a log-based metric that does not exist is refused; ``FAKE_GCLOUD_METRIC_LAG=N`` makes a
new metric unknown to Monitoring for its first N policy writes (the real delay is minutes).
``FAKE_GCLOUD_ERRORS`` (JSON: command words -> error text, e.g. ``{"secrets versions access":
"PERMISSION_DENIED: ..."}``) makes every call starting with those words fail with that error.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

PROJECT_NUMBER = "123456789012"
_Handler = Callable[["Call", dict[str, Any]], Any]


class Exit(Exception):
    def __init__(self, code: int, message: str = "", keep_state: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.keep_state = keep_state  # the state changed before the failure: save it


def not_found(what: str) -> NoReturn:
    raise Exit(1, f"NOT_FOUND: {what} not found")


def usage(message: str) -> NoReturn:
    raise Exit(2, f"fake gcloud: {message}")


class Call:
    """One invocation: the command words, then ``--flag=value`` / ``--switch`` arguments."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.words: list[str] = []
        self.flags: dict[str, list[str]] = {}
        for arg in argv:
            if arg.startswith("--"):
                name, eq, value = arg[2:].partition("=")
                self.flags.setdefault(name, []).append(value if eq else "")
            elif self.flags:
                usage(f"positional argument after flags (use --flag=value): {arg!r}")
            else:
                self.words.append(arg)

    def flag(self, name: str, default: str | None = None) -> str:
        values = self.flags.get(name)
        if values is None:
            if default is None:
                usage(f"--{name} is required for {' '.join(self.words)}")
            return default
        if len(values) > 1:
            usage(f"--{name} given twice")
        return values[0]

    def has(self, name: str) -> bool:
        return name in self.flags

    def positional(self, depth: int) -> str:
        if len(self.words) != depth + 1:
            usage(f"expected one resource after {' '.join(self.words[:depth])}")
        return self.words[depth]


# --- output -----------------------------------------------------------------------


def emit(result: Any, call: Call) -> None:
    """Print a read's result as gcloud would with the call's format flags."""
    fmt = call.flags.get("format", [""])[0]
    if result is None or fmt == "none":
        return
    if not fmt:
        print(json.dumps(result, indent=2))
        return
    printer = sdk_module("googlecloudsdk.core.resource.resource_printer")
    records = result if isinstance(result, list) else [result]
    if call.has("filter"):
        compiled = sdk_module("googlecloudsdk.core.resource.resource_filter").Compile(
            call.flag("filter")
        )
        records = [r for r in records if compiled.Evaluate(r)]
    if call.has("limit"):
        records = records[: int(call.flag("limit"))]
    if call.has("flatten"):
        records = _flatten(records, call.flag("flatten"))
    if isinstance(result, list) or call.has("flatten"):
        printer.Print(records, fmt)
    else:
        printer.Print(records[0], fmt, single=True)


def sdk_module(name: str) -> Any:
    """A module of the installed Cloud SDK (``FAKE_GCLOUD_SDK``), imported as gcloud does."""
    sdk = Path(os.environ["FAKE_GCLOUD_SDK"])
    paths = [str(sdk / "lib"), str(sdk / "lib" / "third_party")]
    if sys.path[:2] != paths:
        sys.path[:0] = paths
    return importlib.import_module(name)


def _flatten(records: list[Any], key: str) -> list[Any]:
    """``--flatten=a[].b``: one record per item of a[].b (the only shape the scripts use)."""
    parent, _, child = key.partition("[].")
    out = []
    for record in records:
        for item in record.get(parent, []):
            for value in item.get(child, []) if child else [item]:
                out.append({parent: {**item, child: value} if child else value})
    return out


# --- state helpers ----------------------------------------------------------------


def project_of(call: Call) -> str:
    project = call.flag("project")
    if project != os.environ.get("FAKE_GCLOUD_PROJECT", project):
        usage(f"unexpected project {project}")
    return project


def policy(state: dict[str, Any], key: str) -> dict[str, Any]:
    """A resource's policy as the API returns it. A conditional binding is kept under
    ``ROLE|TITLE`` (its expression in ``state["conditions"]``), an unconditional one under ROLE."""
    bindings = state["policies"].get(key, {})
    out = []
    for name, members in sorted(bindings.items()):
        if not members:
            continue
        role, _, title = name.partition("|")
        binding: dict[str, Any] = {"role": role, "members": sorted(members)}
        if title:
            expression = state.setdefault("conditions", {}).get(f"{key} {name}", "")
            binding["condition"] = {"title": title, "expression": expression}
        out.append(binding)
    return {
        "etag": "BwY=",
        "version": 3 if any("condition" in b for b in out) else 1,
        "bindings": out,
    }


def iam(state: dict[str, Any], call: Call, key: str, verb: str) -> Any:
    bindings = state["policies"].setdefault(key, {})
    if verb == "get-iam-policy":
        return policy(state, key)
    member, role = call.flag("member"), call.flag("role")
    custom = re.fullmatch(r"projects/[a-z0-9-]+/roles/([A-Za-z0-9_.]+)", role)
    if custom and custom.group(1) not in state.setdefault("roles", {}):
        raise Exit(1, f"INVALID_ARGUMENT: Role {role} does not exist in the resource's hierarchy.")
    if not (role.startswith("roles/") or custom) or (
        ":" not in member
        and member
        not in (
            "allUsers",
            "allAuthenticatedUsers",
        )
    ):
        usage(f"bad binding {member} {role}")
    if member.startswith("serviceAccount:"):
        email = member.split(":", 1)[1]
        if (
            email.endswith(".iam.gserviceaccount.com")
            and not email.startswith("service-")
            and email not in state["service_accounts"]
        ):
            raise Exit(1, f"INVALID_ARGUMENT: Service account {email} does not exist.")
        if email.startswith("service-") and not state["agent_created"]:
            raise Exit(1, f"INVALID_ARGUMENT: Service account {email} does not exist.")
    name = role
    condition = call.flag("condition", "None")
    if condition != "None":
        parts = dict(p.split("=", 1) for p in condition.split(","))
        if set(parts) != {"expression", "title"}:
            usage(f"--condition needs expression= and title=, got {condition!r}")
        name = f"{role}|{parts['title']}"
        state.setdefault("conditions", {})[f"{key} {name}"] = parts["expression"]
    members = set(bindings.get(name, []))
    if verb == "add-iam-policy-binding":
        members.add(member)
    else:
        if member not in members:
            raise Exit(1, f"Policy binding with the specified principal, role {role} not found")
        members.discard(member)
    bindings[name] = sorted(members)
    return None


# --- command groups ------------------------------------------------------------------


def services(call: Call, state: dict[str, Any]) -> Any:
    verb = call.words[1]
    project_of(call)
    if verb == "list":
        if not call.has("enabled"):
            usage("services list without --enabled")
        return [{"config": {"name": api}, "state": "ENABLED"} for api in sorted(state["apis"])]
    if verb == "enable":
        state["apis"] = sorted(set(state["apis"]) | set(call.words[2:]))
        return None
    usage(f"services {verb}")


def beta(call: Call, state: dict[str, Any]) -> Any:
    if call.words[1:4] != ["services", "identity", "create"]:
        usage(" ".join(call.words))
    if call.flag("service") != "pubsub.googleapis.com":
        usage("identity for an unexpected service")
    project_of(call)
    state["agent_created"] = True
    return {"email": f"service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"}


def projects(call: Call, state: dict[str, Any]) -> Any:
    verb, project = call.words[1], call.positional(2)
    if project != os.environ.get("FAKE_GCLOUD_PROJECT", project):
        not_found(f"project {project}")
    if verb == "describe":
        return {"projectId": project, "projectNumber": PROJECT_NUMBER}
    if verb in ("get-iam-policy", "add-iam-policy-binding", "remove-iam-policy-binding"):
        if verb != "get-iam-policy" and not call.flag("condition", ""):
            usage(
                "project bindings need --condition (None, or expression=...,title=...: no prompt)"
            )
        return iam(state, call, f"projects/{project}", verb)
    usage(f"projects {verb}")


def iam_roles(call: Call, state: dict[str, Any]) -> Any:
    """Custom roles of the project: describe, create, update (--permissions), undelete."""
    verb, role_id = call.words[2], call.positional(3)
    project = project_of(call)
    roles = state.setdefault("roles", {})
    role = roles.get(role_id)
    name = f"projects/{project}/roles/{role_id}"
    if verb == "create":
        if role is not None:
            raise Exit(
                1, f"ALREADY_EXISTS: A role named {role_id} in projects/{project} already exists."
            )
        if call.flag("stage") != "GA" or not call.flag("title"):
            usage("roles create needs --title and --stage=GA")
        roles[role_id] = {
            "name": name,
            "title": call.flag("title"),
            "includedPermissions": sorted(call.flag("permissions").split(",")),
            "stage": "GA",
        }
        return None
    if role is None:
        not_found(f"role {name}")
    if verb == "describe":
        return role
    if verb == "update":
        role["includedPermissions"] = sorted(call.flag("permissions").split(","))
        return None
    if verb == "undelete":
        role.pop("deleted", None)
        return None
    usage(f"iam roles {verb}")


def iam_group(call: Call, state: dict[str, Any]) -> Any:
    if call.words[1] == "roles":
        return iam_roles(call, state)
    if call.words[1] != "service-accounts":
        usage(" ".join(call.words))
    verb, name = call.words[2], call.positional(3)
    project = project_of(call)
    if verb == "create":
        email = f"{name}@{project}.iam.gserviceaccount.com"
        if email in state["service_accounts"]:
            raise Exit(1, "ALREADY_EXISTS: Service account already exists")
        state["service_accounts"][email] = {
            "email": email,
            "displayName": call.flag("display-name"),
        }
        return None
    if name not in state["service_accounts"]:
        not_found(f"service account {name}")
    if verb == "describe":
        return state["service_accounts"][name]
    return iam(state, call, f"serviceAccounts/{name}", verb)


def secrets(call: Call, state: dict[str, Any]) -> Any:
    project_of(call)
    if call.words[1] == "versions":
        verb = call.words[2]
        name = call.flag("secret") if verb == "access" else call.positional(3)
        secret = state["secrets"].get(name) or not_found(f"secret {name}")
        if verb == "add":
            if call.flag("data-file") != "-":
                usage("the value must come through stdin")
            data = sys.stdin.read()
            secret["versions"].append(data)
            return None
        if verb == "list":
            return [
                {
                    "name": f"projects/{PROJECT_NUMBER}/secrets/{name}/versions/{i}",
                    "state": "ENABLED",
                }
                for i in range(len(secret["versions"]), 0, -1)
            ]
        if verb == "access":
            if call.positional(3) != "latest" or not secret["versions"]:
                not_found(f"secret {name} version")
            sys.stdout.write(secret["versions"][-1])
            return None
        usage(f"secrets versions {verb}")
    verb, name = call.words[1], call.positional(2)
    if verb == "create":
        if call.flag("replication-policy") != "automatic":
            usage("replication policy")
        state["secrets"][name] = {"versions": []}
        return None
    if name not in state["secrets"]:
        not_found(f"secret {name}")
    if verb == "describe":
        return {"name": f"projects/{PROJECT_NUMBER}/secrets/{name}"}
    return iam(state, call, f"secrets/{name}", verb)


def firestore(call: Call, state: dict[str, Any]) -> Any:
    project = project_of(call)
    group, verb = call.words[1], call.words[2]
    if group == "databases":
        if call.flag("database") != "(default)":
            usage("only the (default) database")
        if verb == "describe":
            return state["firestore"] or not_found("database (default)")
        if verb == "create":
            if call.flag("type") != "firestore-native":
                usage("database type")
            state["firestore"] = {
                "name": f"projects/{project}/databases/(default)",
                "type": "FIRESTORE_NATIVE",
                "locationId": call.flag("location"),
            }
            return None
    base = f"projects/{project}/databases/(default)/collectionGroups"
    if group == "fields" and verb == "ttls":
        sub = call.words[3]
        if sub == "list":
            return [
                {"name": f"{base}/{g}/fields/{f}", "ttlConfig": {"state": "ACTIVE"}}
                for g, f in state["ttls"]
            ]
        if sub == "update" and call.has("enable-ttl") and call.has("async"):
            pair = [call.flag("collection-group"), call.positional(4)]
            if pair not in state["ttls"]:
                state["ttls"].append(pair)
            return None
    if group == "indexes" and verb == "composite":
        sub = call.words[3]
        if sub == "list":
            return state["indexes"]
        if sub == "create":
            fields = []
            for config in call.flags.get("field-config", []):
                parts = dict(p.split("=", 1) for p in config.split(","))
                fields.append({"fieldPath": parts["field-path"], "order": parts["order"].upper()})
            fields.append({"fieldPath": "__name__", "order": "ASCENDING"})
            state["indexes"].append(
                {
                    "name": f"{base}/{call.flag('collection-group')}/indexes/I{len(state['indexes'])}",
                    "queryScope": call.flag("query-scope").upper(),
                    "fields": fields,
                    "state": "CREATING",
                }
            )
            return None
    usage(" ".join(call.words))


def functions(call: Call, state: dict[str, Any]) -> Any:
    verb, name = call.words[1], call.positional(2)
    project = project_of(call)
    region = call.flag("region")
    if not call.has("gen2"):
        usage("functions without --gen2")
    fn = state["functions"].get(name)
    if verb == "describe":
        if not fn:  # how gcloud words a missing function
            path = f"projects/{project}/locations/{region}/functions/{name}"
            raise Exit(
                1,
                f"ResponseError: status=[404], code=[Ok], message=[Resource '{path}' was not found]",
            )
        return fn
    if verb != "deploy":
        usage(f"functions {verb}")
    source = Path(call.flag("source"))
    if not (source / "main.py").is_file():
        usage(f"--source {source} has no main.py")
    if call.flag("runtime") != "python311" or not call.has("trigger-http") or not call.has("quiet"):
        usage("deploy flags")
    public = call.has("allow-unauthenticated")
    if public == call.has("no-allow-unauthenticated"):
        usage("say --allow-unauthenticated or --no-allow-unauthenticated")
    account = call.flag("service-account")
    if account not in state["service_accounts"]:
        raise Exit(1, f"INVALID_ARGUMENT: service account {account} does not exist")
    env = dict(pair.split("=", 1) for pair in call.flag("set-env-vars").split(","))
    labels = dict(pair.split("=", 1) for pair in call.flag("update-labels").split(","))
    builder = call.flag("build-service-account")
    if builder.rsplit("/", 1)[-1] not in state["service_accounts"]:
        raise Exit(1, f"INVALID_ARGUMENT: build service account {builder} does not exist")
    if call.has("set-secrets") and call.has("clear-secrets"):
        usage("--set-secrets and --clear-secrets together")
    secrets = []
    for pair in call.flag("set-secrets", "").split(",") if call.has("set-secrets") else []:
        key, _, ref = pair.partition("=")
        secret, _, version = ref.partition(":")
        secrets.append({"key": key, "projectId": project, "secret": secret, "version": version})
    if not call.has("set-secrets") and not call.has("clear-secrets") and fn:
        secrets = fn["serviceConfig"].get("secretEnvironmentVariables", [])
    ingress = {"all": "ALLOW_ALL", "internal-only": "ALLOW_INTERNAL_ONLY"}.get(
        call.flag("ingress-settings")
    ) or usage("ingress settings")
    uri = f"https://{name}-fk7q2-ew.a.run.app"
    service_config: dict[str, Any] = {
        "uri": uri,
        "service": f"projects/{project}/locations/{region}/services/{name}",
        "serviceAccountEmail": account,
        # Cloud Functions adds this one to every gen2 function.
        "environmentVariables": {**env, "LOG_EXECUTION_ID": "true"},
        "timeoutSeconds": int(call.flag("timeout").rstrip("s")),
        "maxInstanceCount": int(call.flag("max-instances")),
        "ingressSettings": ingress,
        "availableMemory": call.flag("memory"),
        "availableCpu": call.flag("cpu"),
        "maxInstanceRequestConcurrency": int(call.flag("concurrency")),
    }
    if int(call.flag("min-instances")):  # the API leaves a zero out
        service_config["minInstanceCount"] = int(call.flag("min-instances"))
    if secrets:
        service_config["secretEnvironmentVariables"] = secrets
    state["functions"][name] = {
        "name": f"projects/{project}/locations/{region}/functions/{name}",
        "state": "ACTIVE",
        "labels": {**(fn or {}).get("labels", {}), **labels},
        "buildConfig": {
            "entryPoint": call.flag("entry-point"),
            "runtime": "python311",
            "serviceAccount": builder,
        },
        "serviceConfig": service_config,
    }
    _new_revision(state, name, env)
    if public:
        invokers = state["policies"].setdefault(f"services/{name}", {})
        invokers["roles/run.invoker"] = sorted({*invokers.get("roles/run.invoker", []), "allUsers"})
    return None


def _new_revision(state: dict[str, Any], service: str, env: dict[str, str]) -> None:
    svc = state["run"].setdefault(service, {"generation": 0})
    svc["generation"] += 1
    revision = f"{service}-{svc['generation']:05d}-abc"
    svc["env"] = dict(env)
    svc["revision"] = revision


def run(call: Call, state: dict[str, Any]) -> Any:
    if call.words[1] != "services":
        usage(" ".join(call.words))
    verb, name = call.words[2], call.positional(3)
    project_of(call)
    call.flag("region")
    svc = state["run"].get(name)
    if not svc:  # how gcloud words a missing Cloud Run service
        raise Exit(1, f"Cannot find service [{name}]")
    if verb == "describe":
        return {
            "metadata": {"name": name},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"env": [{"name": k, "value": v} for k, v in svc["env"].items()]}
                        ]
                    }
                }
            },
            "status": {
                "latestReadyRevisionName": svc["revision"],
                "latestCreatedRevisionName": svc["revision"],
                "traffic": [
                    {"revisionName": svc["revision"], "percent": 100, "latestRevision": True}
                ],
            },
        }
    if verb == "update":
        allowed = {"region", "project", "update-env-vars", "quiet"}
        if set(call.flags) - allowed:
            usage(f"run services update with {sorted(set(call.flags) - allowed)}")
        _new_revision(
            state,
            name,
            {
                **svc["env"],
                **dict(p.split("=", 1) for p in call.flag("update-env-vars").split(",")),
            },
        )
        return None
    return iam(state, call, f"services/{name}", verb)


def scheduler(call: Call, state: dict[str, Any]) -> Any:
    if call.words[1] != "jobs":
        usage(" ".join(call.words))
    verb = call.words[2]
    project = project_of(call)
    location = call.flag("location")
    if verb == "describe":
        name = call.positional(3)
        return state["jobs"].get(name) or not_found(f"job {name}")
    if verb not in ("create", "update") or call.words[3] != "http":
        usage(" ".join(call.words))
    name = call.positional(4)
    if (verb == "create") == (name in state["jobs"]):
        raise Exit(1, f"{'ALREADY_EXISTS' if verb == 'create' else 'NOT_FOUND'}: job {name}")
    state["jobs"][name] = {
        "name": f"projects/{project}/locations/{location}/jobs/{name}",
        "schedule": call.flag("schedule"),
        "timeZone": call.flag("time-zone"),
        "attemptDeadline": call.flag("attempt-deadline"),
        "state": "ENABLED",
        "httpTarget": {
            "uri": call.flag("uri"),
            "httpMethod": call.flag("http-method").upper(),
            "oidcToken": {
                "serviceAccountEmail": call.flag("oidc-service-account-email"),
                "audience": call.flag("oidc-token-audience"),
            },
        },
    }
    return None


def storage(call: Call, state: dict[str, Any]) -> Any:
    """gcloud storage buckets: describe, create, update, and their IAM policy."""
    if call.words[1] != "buckets":
        usage(" ".join(call.words))
    verb, url = call.words[2], call.positional(3)
    project_of(call)
    if not url.startswith("gs://"):
        usage(f"a bucket URL gs://NAME, got {url}")
    name = url[5:]
    buckets = state.setdefault("buckets", {})

    def settings(bucket: dict[str, Any]) -> None:
        if call.has("lifecycle-file"):
            bucket["lifecycle_config"] = json.loads(Path(call.flag("lifecycle-file")).read_text())
        if call.has("uniform-bucket-level-access"):
            bucket["uniform_bucket_level_access"] = True
        if call.has("public-access-prevention"):
            bucket["public_access_prevention"] = "enforced"

    if verb == "create":
        if name in buckets:
            raise Exit(1, f"HTTPError 409: The requested bucket name {name} is not available.")
        bucket = {"name": name, "location": call.flag("location").upper(), "storage_url": url}
        settings(bucket)
        buckets[name] = bucket
        return None
    if name not in buckets:  # how gcloud storage words a missing bucket
        raise Exit(1, f"{url} not found: 404.")
    if verb == "describe":
        return buckets[name]
    if verb == "update":
        settings(buckets[name])
        return None
    return iam(state, call, f"buckets/{name}", verb)


def _seconds(value: str) -> str:
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in unit:
        return f"{int(value[:-1]) * unit[value[-1]]}s"
    return f"{int(value)}s"


def _subscription_settings(call: Call, sub: dict[str, Any], project: str) -> None:
    """Apply create/update flags to a subscription, shaped as the Pub/Sub API returns it."""
    known = {
        "project",
        "topic",
        "enable-message-ordering",
        "push-endpoint",
        "push-auth-service-account",
        "push-auth-token-audience",
        "ack-deadline",
        "min-retry-delay",
        "max-retry-delay",
        "dead-letter-topic",
        "max-delivery-attempts",
        "expiration-period",
        "message-retention-duration",
        "cloud-storage-bucket",
        "cloud-storage-file-prefix",
        "cloud-storage-output-format",
        "cloud-storage-write-metadata",
        "cloud-storage-max-duration",
    }
    if set(call.flags) - known:
        usage(f"subscription flags {sorted(set(call.flags) - known)}")
    if call.has("push-endpoint"):
        sub["pushConfig"] = {"pushEndpoint": call.flag("push-endpoint")}
        if call.has("push-auth-service-account"):
            sub["pushConfig"]["oidcToken"] = {
                "serviceAccountEmail": call.flag("push-auth-service-account"),
                "audience": call.flag("push-auth-token-audience"),
            }
    if call.has("ack-deadline"):
        sub["ackDeadlineSeconds"] = int(call.flag("ack-deadline"))
    if call.has("min-retry-delay") or call.has("max-retry-delay"):
        sub["retryPolicy"] = {
            "minimumBackoff": _seconds(call.flag("min-retry-delay", "10s")),
            "maximumBackoff": _seconds(call.flag("max-retry-delay", "600s")),
        }
    if call.has("dead-letter-topic"):
        sub["deadLetterPolicy"] = {
            "deadLetterTopic": f"projects/{project}/topics/{call.flag('dead-letter-topic')}",
            "maxDeliveryAttempts": int(call.flag("max-delivery-attempts", "5")),
        }
    if call.has("expiration-period"):
        period = call.flag("expiration-period")
        sub["expirationPolicy"] = {} if period == "never" else {"ttl": _seconds(period)}
    if call.has("message-retention-duration"):
        sub["messageRetentionDuration"] = _seconds(call.flag("message-retention-duration"))
    storage_flags = [f for f in call.flags if f.startswith("cloud-storage-")]
    if storage_flags:
        if not call.has("cloud-storage-bucket"):  # gcloud takes them as one group
            usage("--cloud-storage-* flags need --cloud-storage-bucket")
        config: dict[str, Any] = {
            "bucket": call.flag("cloud-storage-bucket"),
            "filenamePrefix": call.flag("cloud-storage-file-prefix", ""),
            "maxDuration": _seconds(call.flag("cloud-storage-max-duration", "5m")),
        }
        if call.flag("cloud-storage-output-format", "text") == "avro":
            config["avroConfig"] = {"writeMetadata": call.has("cloud-storage-write-metadata")}
        sub["cloudStorageConfig"] = config


def pubsub(call: Call, state: dict[str, Any]) -> Any:
    kind, verb = call.words[1], call.words[2]
    name = call.positional(3)
    project = project_of(call)
    store = state["pubsub"].setdefault(kind, {})
    if verb == "create":
        if name in store:
            raise Exit(1, f"ALREADY_EXISTS: {kind} {name} already exists")
        resource: dict[str, Any] = {"name": f"projects/{project}/{kind}/{name}"}
        if kind == "topics" and call.has("message-retention-duration"):
            resource["messageRetentionDuration"] = _seconds(call.flag("message-retention-duration"))
        if kind == "subscriptions":
            topic = call.flag("topic")
            if topic not in state["pubsub"].get("topics", {}):
                not_found(f"topic {topic}")
            resource.update(
                topic=f"projects/{project}/topics/{topic}",
                pushConfig={},
                ackDeadlineSeconds=10,
                messageRetentionDuration="604800s",
            )
            if call.has("enable-message-ordering"):
                resource["enableMessageOrdering"] = True
            _subscription_settings(call, resource, project)
        store[name] = resource
        return None
    if name not in store:
        not_found(f"{kind} {name}")
    if verb == "describe":
        return store[name]
    if verb == "update" and kind == "topics":
        if set(call.flags) - {"project", "message-retention-duration"}:
            usage("topics update: only --message-retention-duration")
        store[name]["messageRetentionDuration"] = _seconds(call.flag("message-retention-duration"))
        return None
    if verb == "update" and kind == "subscriptions":
        if call.has("topic") or call.has("enable-message-ordering"):
            usage("topic and ordering cannot be updated")
        _subscription_settings(call, store[name], project)
        return None
    if verb in ("get-iam-policy", "add-iam-policy-binding", "remove-iam-policy-binding"):
        return iam(state, call, f"{kind}/{name}", verb)
    usage(f"pubsub {kind} {verb}")


# --- monitoring definitions, read as gcloud reads them -------------------------------

# The API message class gcloud builds from each kind of definition file.
MESSAGE_CLASSES = {
    "LogMetric": ("logging", "v2"),
    "AlertPolicy": ("monitoring", "v3"),
    "Dashboard": ("monitoring", "v1"),
}
USER_METRIC = re.compile(r"logging\.googleapis\.com/user/([A-Za-z0-9_./-]+)")


def load_config(path: Path, kind: str) -> tuple[Any, list[str]]:
    """A definition file as gcloud reads it: its YAML/JSON loader, then its API message class.

    Returns the loaded data and its problems: every field the message class does not know
    (an unknown name, or an enum value that does not exist) by its path, and values of the
    wrong type. gcloud itself sends such fields on; the API refuses them.
    """
    data = sdk_module("googlecloudsdk.core.yaml").load(path.read_text())
    if not isinstance(data, dict):
        return data, [f"{kind}: not a mapping"]
    api, version = MESSAGE_CLASSES[kind]
    messages = sdk_module("googlecloudsdk.api_lib.util.apis").GetMessagesModule(api, version)
    encoding = sdk_module("apitools.base.py.encoding")
    try:
        message = encoding.DictToMessage(data, getattr(messages, kind))
    except Exception as exc:  # apitools' ValidationError and friends: a wrong value type
        return data, [f"{kind}: {exc}"]
    return data, _unknown_fields(message, kind)


def _unknown_fields(message: Any, path: str) -> list[str]:
    base = sdk_module("apitools.base.protorpclite.messages").Message
    found = [f"{path}.{name}" for name in message.all_unrecognized_fields()]
    for field in message.all_fields():
        value = message.get_assigned_value(field.name)
        items = value if field.repeated else [value]
        for i, item in enumerate(items or []):
            if isinstance(item, base):
                where = f"{path}.{field.name}" + (f"[{i}]" if field.repeated else "")
                found += _unknown_fields(item, where)
    return found


def dump_configs(args: list[str]) -> None:
    """``KIND=PATH ...`` -> one JSON object on stdout: PATH -> {"data", "problems"}."""
    out = {}
    for arg in args:
        kind, _, path = arg.partition("=")
        data, problems = load_config(Path(path), kind)
        out[path] = {"data": data, "problems": problems}
    print(json.dumps(out))


def _config(call: Call, flag: str, kind: str) -> dict[str, Any]:
    path = Path(call.flag(flag))
    if not path.is_file():
        usage(f"--{flag}: cannot read {path}")
    data, problems = load_config(path, kind)
    if problems:
        raise Exit(1, f"INVALID_ARGUMENT: Invalid JSON payload received. {'; '.join(problems)}")
    return dict(data)


def _only_flags(call: Call, *allowed: str) -> None:
    extra = set(call.flags) - set(allowed)
    if extra:
        usage(f"{' '.join(call.words[:4])} with {sorted(extra)}")


def _labels(value: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in value.split(",")) if value else {}


def logging_group(call: Call, state: dict[str, Any]) -> Any:
    if call.words[1] != "metrics":
        usage(" ".join(call.words))
    verb = call.words[2]
    project_of(call)
    metrics = state.setdefault("log_metrics", {})
    if verb == "list":
        if len(call.words) != 3:
            usage("logging metrics list takes no positional argument")
        _only_flags(call, "project", "format")
        return [metrics[name] for name in sorted(metrics)]
    name = call.positional(3)
    if verb == "describe":
        _only_flags(call, "project", "format")
        return metrics.get(name) or not_found(f"Metric {name} does not exist.")
    _only_flags(call, "project", "config-from-file", "format")
    data = _config(call, "config-from-file", "LogMetric")
    if verb == "create":
        if name in metrics:
            raise Exit(1, f"ALREADY_EXISTS: Metric {name} already exists.")
        if not data.get("filter"):
            raise Exit(1, "INVALID_ARGUMENT: A filter is required.")
        metrics[name] = {**data, "name": name}
        lag = int(os.environ.get("FAKE_GCLOUD_METRIC_LAG") or 0)
        state.setdefault("metric_lag", {})[name] = lag
        return None
    if verb == "update":
        if name not in metrics:
            not_found(f"Metric {name} does not exist.")
        metrics[name].update(data)  # gcloud replaces the top-level fields the file names
        return None
    usage(f"logging metrics {verb}")


def _policy_metrics_known(data: dict[str, Any], state: dict[str, Any]) -> None:
    """Cloud Monitoring refuses a policy on a log-based metric it does not know (yet)."""
    lag = state.setdefault("metric_lag", {})
    for condition in data.get("conditions", []):
        for kind in ("conditionThreshold", "conditionAbsent"):
            for metric in USER_METRIC.findall(condition.get(kind, {}).get("filter", "")):
                if metric in state.get("log_metrics", {}) and not lag.get(metric):
                    continue
                if lag.get(metric):
                    lag[metric] -= 1
                raise Exit(
                    1,
                    f'NOT_FOUND: Cannot find metric(s) that match type = "logging.googleapis.com/'
                    f'user/{metric}". If a metric was created recently, it could take up to 10 '
                    "minutes to become available. Please try again soon.",
                    keep_state=True,
                )


def alpha(call: Call, state: dict[str, Any]) -> Any:
    if call.words[1:3] != ["monitoring", "policies"] or len(call.words) < 4:
        usage(" ".join(call.words))
    verb = call.words[3]
    project = project_of(call)
    policies = state.setdefault("alert_policies", {})
    if verb in ("list", "create") and len(call.words) != 4:
        usage(f"alpha monitoring policies {verb} takes no positional argument")
    if verb == "list":
        _only_flags(call, "project", "format")
        return [policies[name] for name in sorted(policies)]
    if verb == "create":
        _only_flags(
            call, "project", "policy-from-file", "user-labels", "notification-channels", "format"
        )
        data = _config(call, "policy-from-file", "AlertPolicy")
        _policy_metrics_known(data, state)
        name = f"projects/{project}/alertPolicies/{1000 + len(policies)}"
        channels = call.flag("notification-channels", "")
        labels = _labels(call.flag("user-labels", ""))
    elif verb == "update":
        name = f"projects/{project}/alertPolicies/{call.positional(4)}"
        _only_flags(
            call,
            "project",
            "policy-from-file",
            "update-user-labels",
            "set-notification-channels",
            "format",
        )
        if name not in policies:
            not_found(f"alert policy {name}")
        data = _config(call, "policy-from-file", "AlertPolicy")
        _policy_metrics_known(data, state)
        channels = call.flag(
            "set-notification-channels", ",".join(data.get("notificationChannels", []))
        )
        labels = _labels(call.flag("update-user-labels", ""))
    else:
        usage(f"alpha monitoring policies {verb}")
    policies[name] = {
        **data,
        "name": name,
        "userLabels": {**data.get("userLabels", {}), **labels},
        "notificationChannels": channels.split(",") if channels else [],
    }
    return None


def monitoring(call: Call, state: dict[str, Any]) -> Any:
    if call.words[1] != "dashboards":  # alert policies exist in the alpha track only
        usage(" ".join(call.words))
    verb = call.words[2]
    project_of(call)
    boards = state.setdefault("dashboards", {})
    if verb == "list":
        _only_flags(call, "project", "format")
        return [boards[name] for name in sorted(boards)]
    _only_flags(call, "project", "config-from-file", "format")
    data = _config(call, "config-from-file", "Dashboard")
    if not data.get("displayName") or not data.get("mosaicLayout"):
        raise Exit(1, "INVALID_ARGUMENT: a dashboard needs a displayName and a layout")
    if verb == "create":
        if len(call.words) != 3:
            usage("monitoring dashboards create takes no positional argument")
        name = f"projects/{PROJECT_NUMBER}/dashboards/d{1000 + len(boards)}"
    elif verb == "update":
        name = f"projects/{PROJECT_NUMBER}/dashboards/{call.positional(3)}"
        if name not in boards:
            not_found(f"dashboard {name}")
    else:
        usage(f"monitoring dashboards {verb}")
    etag = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]
    boards[name] = {**data, "name": name, "etag": etag}
    return None


def config(call: Call, state: dict[str, Any]) -> Any:
    if call.words[1:] != ["get", "account"]:
        usage(" ".join(call.words))
    sys.stdout.write(os.environ.get("FAKE_GCLOUD_ACCOUNT", "deployer@example.com") + "\n")
    return None


def auth(call: Call, state: dict[str, Any]) -> Any:
    if call.words[1:] != ["print-access-token"]:
        usage(" ".join(call.words))
    sys.stdout.write("fake-access-token\n")
    return None


GROUPS: dict[str, _Handler] = {
    "config": config,
    "auth": auth,
    "storage": storage,
    "services": services,
    "beta": beta,
    "projects": projects,
    "iam": iam_group,
    "secrets": secrets,
    "firestore": firestore,
    "functions": functions,
    "run": run,
    "scheduler": scheduler,
    "pubsub": pubsub,
    "logging": logging_group,
    "alpha": alpha,
    "monitoring": monitoring,
}


def main() -> int:
    argv = sys.argv[1:]
    stdin_digest = None
    state_path = Path(os.environ["FAKE_GCLOUD_STATE"])
    state: dict[str, Any] = (
        json.loads(state_path.read_text())
        if state_path.exists()
        else {
            "apis": [],
            "agent_created": False,
            "service_accounts": {},
            "policies": {},
            "secrets": {},
            "firestore": None,
            "ttls": [],
            "indexes": [],
            "functions": {},
            "run": {},
            "jobs": {},
            "pubsub": {},
        }
    )
    if argv[-1:] == ["--data-file=-"] or "--data-file=-" in argv:
        data = sys.stdin.read()
        stdin_digest = hashlib.sha256(data.encode()).hexdigest()
        sys.stdin = _Replay(data)
    with Path(os.environ["FAKE_GCLOUD_LOG"]).open("a") as log:
        log.write(json.dumps({"argv": argv, "stdin_sha256": stdin_digest}) + "\n")
    try:
        call = Call(argv)
        if not call.words or call.words[0] not in GROUPS:
            usage(f"unknown command {' '.join(call.words)}")
        for words, error in json.loads(os.environ.get("FAKE_GCLOUD_ERRORS") or "{}").items():
            if call.words[: len(words.split())] == words.split():
                raise Exit(1, error)
        result = GROUPS[call.words[0]](call, state)
        state_path.write_text(json.dumps(state, indent=1, sort_keys=True))
        emit(result, call)
    except Exit as exc:
        if exc.keep_state:
            state_path.write_text(json.dumps(state, indent=1, sort_keys=True))
        command = ".".join(["gcloud", *argv[:3]]).split("--")[0]
        print(f"ERROR: ({command}) {exc.message}", file=sys.stderr)
        return exc.code
    return 0


class _Replay:
    """stdin already read once (to digest it), read again by the handler."""

    def __init__(self, data: str) -> None:
        self._data = data

    def read(self) -> str:
        data, self._data = self._data, ""
        return data


if __name__ == "__main__":
    sys.exit(main())
