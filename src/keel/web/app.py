"""The web application: routes, static files and the security headers every response carries."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.context import Context
from keel.web import (
    approvals,
    auth,
    dashboard_builder,
    files,
    import_jobs,
    imports,
    lists,
    named,
    oauth_authorize,
    records,
    reports,
    setup,
    setup_admin,
    setup_layouts,
    setup_objects,
    setup_people,
    setup_perms,
    setup_rules,
    setup_security,
    sharing,
)
from keel.web.base import HERE, Web, apps_for, make_env, page
from keel.web.definitions import install_tables, load_catalog, load_launcher

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
           (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
           (b"cache-control", b"no-store")]


class SecurityHeaders:
    """Adds CSP (no inline script), clickjacking and sniffing protection to every web response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in have and not (static and k == b"cache-control")]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, wrapped)


def home(web: Web) -> Response:
    return web.render("home.html", apps=apps_for(web.ctx, web.request.app.state.launcher))


def create_web_app(ctx: Context) -> ASGIApp:
    routes = [
        Route("/login", page(auth.login_page, public=True), methods=["GET"]),
        Route("/login", page(auth.login_submit, public=True), methods=["POST"]),
        Route("/logout", page(auth.logout), methods=["POST"]),
        Route("/services/oauth2/authorize", page(oauth_authorize.authorize_page, public=True), methods=["GET"]),
        Route("/services/oauth2/authorize", page(oauth_authorize.authorize_submit), methods=["POST"]),
        Route("/", page(home)),
        Route("/search", page(records.search)),
        Route("/o/{obj}", page(lists.list_view)),
        Route("/o/{obj}/count", page(lists.list_count)),
        Route("/o/{obj}/views", page(lists.views_post), methods=["POST"]),
        Route("/o/{obj}/views/delete", page(lists.views_post), methods=["POST"]),
        Route("/o/{obj}/export.csv", page(lists.export_list)),
        Route("/o/{obj}/mass", page(lists.mass_action), methods=["POST"]),
        Route("/o/{obj}/cell/{id}/{field}", page(lists.cell_edit), methods=["GET", "POST"]),
        Route("/o/{obj}/kanban", page(lists.kanban)),
        Route("/o/{obj}/kanban/move", page(lists.kanban_move), methods=["POST"]),
        Route("/o/{obj}/new", page(records.record_form), methods=["GET", "POST"]),
        Route("/o/{obj}/import", page(imports.wizard), methods=["GET", "POST"]),
        Route("/imports/{id}", page(import_jobs.progress)),
        Route("/imports/{id}/undo", page(import_jobs.undo), methods=["POST"]),
        Route("/lookup/{obj}", page(records.lookup)),
        Route("/r/{id}", page(records.record_page)),
        Route("/r/{id}/edit", page(records.record_form), methods=["GET", "POST"]),
        Route("/r/{id}/approval", page(approvals.approval_action), methods=["POST"]),
        Route("/r/{id}/notes", page(files.add_note), methods=["POST"]),
        Route("/r/{id}/files", page(files.upload), methods=["POST"]),
        Route("/r/{id}/sharing", page(sharing.sharing_page)),
        Route("/r/{id}/sharing", page(sharing.add_share), methods=["POST"]),
        Route("/r/{id}/sharing/remove", page(sharing.remove_share), methods=["POST"]),
        Route("/files/{id}", page(files.download)),
        Route("/files/{id}/delete", page(files.delete_file), methods=["POST"]),
        Route("/approvals", page(approvals.items_page)),
        Route("/reports", page(reports.report_page)),
        Route("/reports/export.xlsx", page(reports.report_xlsx)),
        Route("/reports/export.csv", page(reports.report_csv)),
        Route("/dashboards", page(reports.dashboard)),
        Route("/dashboards/build", page(dashboard_builder.builder), methods=["GET", "POST"]),
        Route("/dashboards/{name}", page(named.named_dashboard)),
        Route("/reports/r/{name}", page(named.named_report)),
        Route("/reports/save", page(named.save), methods=["POST"]),
        Route("/setup", page(setup.objects)),
        Route("/setup/objects/new", page(setup_objects.new_object), methods=["GET", "POST"]),
        Route("/setup/o/{obj}", page(setup.object_detail)),
        Route("/setup/o/{obj}/edit", page(setup_objects.edit_object), methods=["GET", "POST"]),
        Route("/setup/o/{obj}/fields/{field}/edit", page(setup_objects.edit_field), methods=["GET", "POST"]),
        Route("/setup/users", page(setup_admin.users), methods=["GET", "POST"]),
        Route("/setup/users/{user}", page(setup_people.user_access), methods=["GET", "POST"]),
        Route("/setup/roles", page(setup_people.roles), methods=["GET", "POST"]),
        Route("/setup/profiles", page(setup_perms.permission_sets), methods=["GET", "POST"]),
        Route("/setup/permission-sets/{pset}", page(setup_perms.pset_editor), methods=["GET", "POST"]),
        Route("/setup/permission-sets/{pset}/o/{obj}", page(setup_perms.pset_fields), methods=["GET", "POST"]),
        Route("/setup/permission-set-groups", page(setup_perms.groups), methods=["GET", "POST"]),
        Route("/setup/flows", page(setup_admin.flows), methods=["GET", "POST"]),
        Route("/setup/outbox", page(setup_admin.outbox), methods=["GET", "POST"]),
        Route("/setup/audit", page(setup_admin.audit_log)),
        Route("/setup/sharing", page(setup_security.sharing), methods=["GET", "POST"]),
        Route("/setup/connected-apps", page(setup_security.connected_apps), methods=["GET", "POST"]),
        Route("/setup/o/{obj}/fields/new", page(setup.new_field), methods=["GET", "POST"]),
        Route("/setup/o/{obj}/fields/{field}/values", page(setup.picklist_editor), methods=["GET", "POST"]),
        Route("/setup/o/{obj}/rules", page(setup_rules.rules_page), methods=["GET", "POST"]),
        Route("/setup/o/{obj}/layouts/{name}", page(setup_layouts.layout_editor), methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.ctx = ctx
    app.state.jinja = make_env()
    app.state.catalog = load_catalog()
    app.state.launcher = load_launcher()
    app.state.dashboard_cache = named.ResultCache()
    install_tables(ctx)
    return SecurityHeaders(app)
