"""Plumbing every screen shares: templates, the signed-in user's Context, CSRF, SOQL literals and value display.

Handlers are plain synchronous functions ``(Web) -> Response`` run in Starlette's thread pool by ``page``: the
services they call are synchronous and hit the database, so they must not block the event loop. The wrapper
resolves the session cookie to an ``Actor`` on every request (so a revoked session or permission dies at once),
checks the CSRF token on every state-changing method, and turns ``KeelError`` into an error page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from keel.context import Context
from keel.errors import KeelError
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.security import sessions

HERE = Path(__file__).resolve().parent
COOKIE = "keel_sid"
LOGIN_CSRF_COOKIE = "keel_lcsrf"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def make_env() -> jinja2.Environment:
    """Autoescaping for every template, whatever its extension: escaping is never opt-in."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             auto_reload=False)
    env.filters["display"] = display
    env.filters["plan_digest"] = plan_digest
    env.filters["urlq"] = lambda s: quote(str(s), safe="")
    env.globals["qs"] = lambda params, **kw: urlencode({**params, **kw})
    env.filters["thousands"] = lambda n: f"{int(n):,}"
    return env


def csrf_for(token: str) -> str:
    """The CSRF token is derived from the session secret, so it needs no storage and dies with the session."""
    return hmac.new(token.encode(), b"keel-web-csrf", hashlib.sha256).hexdigest()


@dataclass
class Web:
    """One request as a handler sees it: the user's Context, form fields and the path parameters."""

    request: Request
    ctx: Context
    form: dict[str, Any]
    files: dict[str, UploadFile]
    csrf: str
    multi: dict[str, list[str]] = field(default_factory=dict)

    @property
    def path(self) -> Mapping[str, Any]:
        return self.request.path_params

    @property
    def params(self) -> Mapping[str, str]:
        return self.request.query_params

    @property
    def htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"

    def schema(self) -> SchemaSnapshot:
        return self.ctx.schema()

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        env: jinja2.Environment = self.request.app.state.jinja
        html = env.get_template(template).render(
            csrf=self.csrf, user=self.ctx.actor, nav=nav_objects(self.ctx), request=self.request, **values)
        return HTMLResponse(html, status_code=status)


Handler = Callable[[Web], Response]


def page(handler: Handler, *, public: bool = False) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        response = await _endpoint(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
        return response

    async def _endpoint(request: Request) -> Response:
        base: Context = request.app.state.ctx
        form: dict[str, Any] = {}
        files: dict[str, UploadFile] = {}
        multi: dict[str, list[str]] = {}
        if request.method in UNSAFE:
            data: FormData = await request.form(max_part_size=20 * 1024 * 1024)
            for k, v in data.multi_items():
                if isinstance(v, UploadFile):
                    files[k] = v
                else:
                    form.setdefault(k, v)
                    multi.setdefault(k, []).append(v)
        if public:
            return await run_in_threadpool(handler, Web(request, base, form, files, "", multi))
        token = request.cookies.get(COOKIE, "")
        actor = await run_in_threadpool(sessions.resolve_token, base, token) if token else None
        if actor is None:
            if request.headers.get("hx-request") == "true":
                return Response(status_code=401, headers={"HX-Redirect": "/login"})
            if request.method in UNSAFE:
                return HTMLResponse("Your session has ended; sign in again.", status_code=401)
            return RedirectResponse("/login?next=" + quote(request.url.path, safe="/"), status_code=303)
        csrf = csrf_for(token)
        if request.method in UNSAFE:
            sent = request.headers.get("x-csrf-token") or str(form.get("csrf_token", ""))
            if not hmac.compare_digest(sent, csrf):
                return HTMLResponse("Missing or wrong CSRF token; reload the page and try again.", status_code=403)
        web = Web(request, base.as_actor(actor), form, files, csrf, multi)
        try:
            return await run_in_threadpool(handler, web)
        except KeelError as e:
            status = {"NOT_FOUND": 404, "INSUFFICIENT_ACCESS": 403, "INSUFFICIENT_ACCESS_OR_READONLY": 403,
                      "INVALID_TYPE": 404}.get(e.code, 400)
            if web.htmx:
                return HTMLResponse(f'<p class="error" role="alert">{Markup.escape(e.message)}</p>',
                                    status_code=status)
            return web.render("error.html", status=status, message=e.message, code=e.code)

    return endpoint


# -- navigation ---------------------------------------------------------------------------------------------

SYSTEM_OBJECTS = {"User", "Profile", "UserRole", "PermissionSet", "PermissionSetAssignment", "PermissionSetGroup",
                  "PermissionSetGroupComponent", "ObjectPermissions", "FieldPermissions", "Group", "GroupMember",
                  "SharingRule", "Organization", "Note", "Attachment", "Task", "Event", "BulkJob",
                  "ProcessInstance", "ProcessInstanceStep", "ProcessInstanceWorkitem"}


def nav_objects(ctx: Context) -> list[ObjectDef]:
    schema = ctx.schema()
    out = [o for o in schema if o.api_name not in SYSTEM_OBJECTS and o.queryable
           and not o.api_name.endswith(("Share", "History", "Feed"))
           and (ctx.actor.is_system or ctx.actor.access.can(o.api_name, "read"))]
    return sorted(out, key=lambda o: (not o.custom, o.label))  # the org's own objects first


def apps_for(ctx: Context, apps: Mapping[str, tuple[str, ...]]) -> list[tuple[str, list[ObjectDef]]]:
    """The launcher: each app (from the app packages, ``definitions.load_launcher``) lists the tabs the user can
    open; custom objects in no app get their own group."""
    visible = {o.api_name: o for o in nav_objects(ctx)}
    out: list[tuple[str, list[ObjectDef]]] = []
    placed: set[str] = set()
    for name, objs in apps.items():
        tabs = [visible[o] for o in objs if o in visible]
        placed.update(objs)
        if tabs:
            out.append((name, tabs))
    rest = [o for n, o in visible.items() if n not in placed]
    if rest:
        out.append(("Other", rest))
    return out


# -- reading objects and values ---------------------------------------------------------------------------

def readable(ctx: Context, obj: ObjectDef, name: str) -> bool:
    return ctx.actor.is_system or ctx.actor.access.field_readable(obj.api_name, name)


def editable(ctx: Context, obj: ObjectDef, f: FieldDef) -> bool:
    if f.system_managed or f.type in ("formula", "rollup", "auto_number", "id") or f.api_name in (
            "CreatedDate", "LastModifiedDate", "SystemModstamp", "CreatedById", "LastModifiedById", "IsDeleted"):
        return False
    return ctx.actor.is_system or ctx.actor.access.field_editable(obj.api_name, f.api_name)


def require(ctx: Context, obj: ObjectDef, action: str) -> None:
    if not ctx.actor.is_system and not ctx.actor.access.can(obj.api_name, action):
        raise KeelError(f"You do not have {action} access to {obj.label} records.", code="INSUFFICIENT_ACCESS")


def soql_literal(f: FieldDef | None, value: Any) -> str:
    """A value as a SOQL literal. Strings are quoted with SOQL's escapes; the compiler binds every literal as a
    parameter, so this only has to produce valid SOQL, never safe SQL."""
    if value is None or value == "":
        return "null"
    kind = f.returns if f is not None and f.type == "formula" and f.returns else (f.type if f else "text")
    if kind in ("number", "currency", "percent", "int", "double"):
        try:
            return str(Decimal(str(value)))
        except ArithmeticError:
            raise KeelError(f"'{value}' is not a number.", code="INVALID_FIELD") from None
    if kind in ("checkbox", "boolean"):
        return "true" if str(value).lower() in ("true", "1", "on", "yes") else "false"
    if kind in ("date", "datetime") and isinstance(value, str) and (value[:1].isdigit() or value.isupper()):
        return value
    s = str(value).replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{s}'"


def plan_digest(ops: Any) -> str:
    """A digest of a metadata plan as shown (its operations' descriptions). The setup editors carry it with the
    Apply button, so Apply stores exactly the plan the administrator saw: a form changed after "Show plan", or an
    object someone else changed meanwhile, gives another plan, and Apply refuses it."""
    return hashlib.sha256("\n".join(str(o) for o in ops or ()).encode()).hexdigest()


def relation_select(f: FieldDef, ctx: Context) -> str | None:
    """The ``Rel.Name`` path shown for a lookup column, when the user may read a target's name: without it the
    lookup shows its id (asking for the name would fail the whole page, as SOQL refuses an unreadable object)."""
    if not (f.is_reference and f.relationship_name):
        return None
    if ctx.actor.is_system:
        return f"{f.relationship_name}.Name"
    access = ctx.actor.access
    if any(access.can(t, "read") and access.field_readable(t, "Name") for t in f.reference_to):
        return f"{f.relationship_name}.Name"
    return None


def display(value: Any, f: FieldDef | None = None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if f is not None:
        if f.type == "currency" and isinstance(value, int | float | Decimal):
            return f"{float(value):,.2f}"
        if f.type == "percent":
            return f"{value}%"
        if f.type == "picklist":
            pv = f.picklist_value(str(value))
            return pv.label if pv else str(value)
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}" if abs(value) >= 10000 else str(int(value))
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T" and value[:4].isdigit():
        return value[:16].replace("T", " ")
    return str(value)


def cell_value(rec: Mapping[str, Any], f: FieldDef) -> tuple[str, str | None]:
    """(text, link) for a field of a shaped record: lookups show the parent's name and link to it."""
    v = rec.get(f.api_name)
    if f.is_reference and f.relationship_name:
        parent = rec.get(f.relationship_name)
        name = parent.get("Name") if isinstance(parent, Mapping) else None
        return (str(name) if name is not None else display(v, f)), (f"/r/{v}" if v else None)
    return display(v, f), None


def back(web: Web, fallback: str = "/") -> str:
    """A same-origin return path (never an absolute URL: no open redirects)."""
    nxt = str(web.form.get("next") or web.params.get("next") or "")
    return nxt if nxt.startswith("/") and not nxt.startswith("//") else fallback
