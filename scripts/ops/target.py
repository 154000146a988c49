"""Which project and emulators a ``paynow-ops`` command works on, and asking before it
changes data in a cloud project.

The target is, first found: ``--project P`` (a cloud project: emulator variables are
ignored), else the environment (``GOOGLE_CLOUD_PROJECT`` or ``GCP_PROJECT``, with the
emulator hosts when they are set), else the local stack that is running now, through
the file it writes (``.local/stack.env``). Every command says on stderr which it is.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from scripts.local import localstack
from scripts.ops.clients import UsageError

PROJECT_VARIABLES = ("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT")
EMULATOR_VARIABLES = ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
SERVICES = {"FIRESTORE_EMULATOR_HOST": "Firestore", "PUBSUB_EMULATOR_HOST": "Pub/Sub"}


class NotConfirmed(UsageError):
    """A command that changes cloud data was not confirmed (exit 2, nothing changed)."""


@dataclass(frozen=True)
class Target:
    """Where the command's clients point: the variables it sets (``None``: unset)."""

    project: str
    source: str
    variables: dict[str, str | None] = field(default_factory=dict)
    stack: dict[str, str] | None = None  # the stack file's values, when it came from there

    @property
    def emulators(self) -> dict[str, str]:
        return {k: v for k in EMULATOR_VARIABLES if (v := self.variables.get(k))}

    @property
    def cloud(self) -> bool:
        """Real Google Cloud for Firestore or Pub/Sub (an emulator for only one of them
        still leaves the other's data in the cloud)."""
        return len(self.emulators) < len(EMULATOR_VARIABLES)

    def describe(self) -> str:
        if not self.emulators:
            return f"cloud project {self.project} ({self.source})"
        where = ", ".join(
            f"{name} {self.emulators.get(k, 'in the cloud')}" for k, name in SERVICES.items()
        )
        kind = "cloud project" if self.cloud else "emulators, project"
        return f"{kind} {self.project}: {where} ({self.source})"

    @contextlib.contextmanager
    def applied(self, environ: MutableMapping[str, str] | None = None) -> Iterator[None]:
        """The variables the Google clients and ``config.load`` read, set for the block
        (the clients read them when they are created) and put back after."""
        environ = os.environ if environ is None else environ
        saved = {key: environ.get(key) for key in self.variables}
        try:
            _set(environ, self.variables)
            yield
        finally:
            _set(environ, saved)


def _set(environ: MutableMapping[str, str], values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value


def resolve(
    project: str | None,
    environ: Mapping[str, str] | None = None,
    stack_file: Path = localstack.STACK_ENV,
) -> Target:
    """The target of this run (see the module); ``UsageError`` when there is none."""
    environ = os.environ if environ is None else environ
    if project:
        ignored = [k for k in EMULATOR_VARIABLES if environ.get(k)]
        source = "--project" + (f"; {' and '.join(ignored)} ignored" if ignored else "")
        variables: dict[str, str | None] = dict.fromkeys(EMULATOR_VARIABLES)
        return Target(project, source, {**variables, "GOOGLE_CLOUD_PROJECT": project})
    for name in PROJECT_VARIABLES:
        if value := environ.get(name, "").strip():
            hosts = {k: environ[k] for k in EMULATOR_VARIABLES if environ.get(k)}
            return Target(value, f"from {name}", {"GOOGLE_CLOUD_PROJECT": value, **hosts})
    stack = localstack.running_stack(stack_file)
    if stack is not None:
        names = ("GOOGLE_CLOUD_PROJECT", *EMULATOR_VARIABLES)
        variables = {k: stack.get(k) for k in names}
        where = f"the local stack, pid {stack.get('STACK_PID')}, from {_shown(stack_file)}"
        return Target(stack.get("GOOGLE_CLOUD_PROJECT", ""), where, variables, stack)
    stale = " (the one there is left from a stack that no longer runs)"
    raise UsageError(
        "no target: pass --project P for a cloud project, set GOOGLE_CLOUD_PROJECT, "
        f"or start the local stack (./scripts/stack), which writes {_shown(stack_file)}"
        + (stale if stack_file.exists() else "")
    )


def local_stack_for(
    target: Target, stack_file: Path = localstack.STACK_ENV
) -> dict[str, str] | None:
    """The running local stack's values when ``target`` points at its emulators."""
    if target.stack is not None:
        return target.stack
    stack = localstack.running_stack(stack_file)
    if stack and target.emulators and all(stack.get(k) == v for k, v in target.emulators.items()):
        return stack
    return None


def confirm(
    target: Target,
    action: str,
    *,
    yes: bool,
    stdin: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> None:
    """Ask on the terminal before ``action`` changes data in a cloud project.

    Nothing to ask on the emulators or with ``--yes``. With no terminal to ask on, refuse
    (``NotConfirmed``): a script must say ``--yes`` for a cloud project.
    """
    if not target.cloud or yes:
        return
    stdin = sys.stdin if stdin is None else stdin
    stderr = sys.stderr if stderr is None else stderr
    what = f"{action} changes data in cloud project {target.project}"
    if not stdin.isatty():
        raise NotConfirmed(f"{what}; no terminal to confirm on: run it again with --yes")
    stderr.write(f"paynow-ops: {what}. Go on? [y/N] ")
    stderr.flush()
    if stdin.readline().strip().lower() not in ("y", "yes"):
        raise NotConfirmed(f"{action} not confirmed: nothing changed")


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(localstack.ROOT))
    except ValueError:
        return str(path)
