"""``/sobjects/User/{id}/password``: setting a user's password through the API, as Salesforce allows, so user
set-up can be scripted with existing tools. Users may set their own; Manage Users may set anyone's."""

from __future__ import annotations

from keel.api.errors import error
from keel.api.routing import ApiCall, Reply
from keel.services.users import set_password
from keel.storage import ids


def route(call: ApiCall, user_id: str) -> Reply:
    pk = ids.decode(user_id, "005")
    actor = call.ctx.actor
    has = getattr(actor.access, "has", None)
    manage_users = actor.is_system or (has is not None and has("ManageUsers"))
    if pk != actor.user_id and not manage_users:
        raise error("INSUFFICIENT_ACCESS", "You need the Manage Users permission to set another user's password.")
    if call.method in ("GET", "HEAD"):
        return Reply(200, {"isExpired": False})
    if call.method != "POST":
        raise error("METHOD_NOT_ALLOWED", "Use POST with {\"NewPassword\": \"…\"}.")
    new = call.json_object().get("NewPassword")
    if not isinstance(new, str) or not new:
        raise error("JSON_PARSER_ERROR", "The body must be {\"NewPassword\": \"…\"}.", ["NewPassword"])
    with call.writing() as conn:
        set_password(call.ctx, conn, ids.encode("005", pk), new)
    return Reply(204, None)
