"""Notes and files on records, for any object.

Why ``ParentRecordId`` (text) and not ``ParentId``: the standard ``Attachment``/``Note`` objects keep Salesforce's
``ParentId`` lookup, which only takes the objects it lists, so custom objects (Candidate resumes, insurance
certificates) could not have files. Both objects carry ``ParentRecordId``, an indexed text id of any record; the web
app fills it (and ``ParentId`` too when the parent's object is one ParentId accepts, for API clients).

Access is the parent's, as in Salesforce: a note or file is visible to whoever can read the parent record, and a
lookup-less "controlled by parent" object cannot express that in the sharing predicate. So every read here first
selects the parent through SOQL as the user (a hidden parent is "not found"), and only then reads its notes and
files through the audited system context. Private notes are shown to their owner only. Adding a
note or file needs read access to the parent record plus object Edit on it (Salesforce's rule for attachments).

Files are stored content-addressed under ``settings.data_dir/files/ab/<sha256>`` (never under the web root, never
under a name the user chose) and served with ``nosniff``, a sandboxing CSP, and ``Content-Disposition:
attachment`` for everything except plain raster images, because PDF can carry JavaScript and SVG/HTML are active.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from starlette.responses import FileResponse, RedirectResponse, Response

from keel.context import Context
from keel.errors import BatchError, KeelError
from keel.metadata.model import ObjectDef
from keel.records import delete_many, save_many
from keel.services.query import query
from keel.services.security import system_context
from keel.web.base import Web, require, soql_literal

# extension -> (content type, magic prefix that must match or None, served inline)
TYPES: dict[str, tuple[str, bytes | None, bool]] = {
    "pdf": ("application/pdf", b"%PDF-", False),
    "png": ("image/png", b"\x89PNG\r\n\x1a\n", True),
    "jpg": ("image/jpeg", b"\xff\xd8\xff", True),
    "jpeg": ("image/jpeg", b"\xff\xd8\xff", True),
    "gif": ("image/gif", b"GIF8", True),
    "txt": ("text/plain; charset=utf-8", None, False),
    "csv": ("text/csv; charset=utf-8", None, False),
    "doc": ("application/msword", None, False),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", b"PK", False),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", b"PK", False),
    "odt": ("application/vnd.oasis.opendocument.text", b"PK", False),
    "rtf": ("application/rtf", b"{\\rtf", False),
    "svg": ("image/svg+xml", None, False),
    "html": ("text/html; charset=utf-8", None, False),
}
DOWNLOAD_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"


def allowed_types(ctx: Context) -> set[str]:
    raw = ctx.settings.upload_types
    return {t.strip().lower().lstrip(".") for t in raw.split(",") if t.strip()} & set(TYPES)


def max_bytes(ctx: Context) -> int:
    return ctx.settings.upload_max_bytes


def visible_parent(web: Web, rid: str) -> tuple[ObjectDef, str]:
    """The parent's object and 18-character id, if the user can read it (SOQL as the user), else NOT_FOUND."""
    if not rid.isalnum() or len(rid) not in (15, 18):
        raise KeelError("Malformed record id.", code="NOT_FOUND")
    obj = web.schema().find_by_prefix(rid[:3])
    if obj is None:
        raise KeelError("No such record.", code="NOT_FOUND")
    require(web.ctx, obj, "read")
    recs = query(web.ctx, f"SELECT Id FROM {obj.api_name} WHERE Id = {soql_literal(None, rid)}")["records"]
    if not recs:
        raise KeelError(f"The {obj.label} does not exist or is not visible to you.", code="NOT_FOUND")
    return obj, str(recs[0]["Id"])


def notes_and_files(web: Web, sys_ctx: Context, rid18: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Notes and files of a parent the caller has shown to be visible to the user."""
    lit = soql_literal(None, rid18)
    me = web.ctx.actor.user_id
    notes = [n for n in query(sys_ctx, "SELECT Id, Name, Body, IsPrivate, OwnerId, Owner.Name, CreatedDate FROM Note "
                                       f"WHERE ParentRecordId = {lit} ORDER BY CreatedDate DESC, Id DESC LIMIT 50"
                              )["records"]
             if not n.get("IsPrivate") or _pk(n.get("OwnerId")) == me]
    files = query(sys_ctx, "SELECT Id, Name, ContentType, BodyLength, Owner.Name, CreatedDate FROM Attachment "
                           f"WHERE ParentRecordId = {lit} ORDER BY CreatedDate DESC, Id DESC LIMIT 50")["records"]
    return notes, list(files)


def _pk(public_id: Any) -> int | None:
    from keel.storage import ids

    try:
        return ids.split(str(public_id))[1]
    except (KeelError, ValueError):
        return None


def _parent_fields(obj: ObjectDef, child: ObjectDef, rid18: str) -> dict[str, Any]:
    draft: dict[str, Any] = {"ParentRecordId": rid18}
    pf = child.find_field("ParentId")
    if pf is not None and obj.api_name in pf.reference_to:
        draft["ParentId"] = rid18
    return draft


def _save(web: Web, obj_name: str, draft: dict[str, Any]) -> str:
    try:
        res = save_many(web.ctx, obj_name, [draft])[0]
    except BatchError as e:
        res = e.results[0]
    if not res.success or not res.id:
        raise KeelError("; ".join(e.message for e in res.errors) or "Could not save.", code="INVALID_FIELD")
    return str(res.id)


def add_note(web: Web) -> Response:
    """``POST /r/{id}/notes``: a note on any visible record the user can edit (object Edit)."""
    obj, rid18 = visible_parent(web, str(web.path["id"]))
    require(web.ctx, obj, "edit")
    title = str(web.form.get("title", "")).strip()[:80]
    body = str(web.form.get("body", "")).strip()[:32000]
    if not title and not body:
        raise KeelError("A note needs a title or a body.", code="REQUIRED_FIELD_MISSING")
    _save(web, "Note", {"Name": title or body[:80], "Body": body,
                        "IsPrivate": str(web.form.get("private", "")) in ("on", "true", "1"),
                        **_parent_fields(obj, web.schema().get_object("Note"), rid18)})
    return RedirectResponse(f"/r/{rid18}#notes", status_code=303)


def _sniff_ok(ext: str, head: bytes) -> bool:
    _ctype, magic, _inline = TYPES[ext]
    if magic is not None:
        return head.startswith(magic)
    if ext in ("txt", "csv"):
        return b"\x00" not in head
    return True


def store_blob(ctx: Context, data: bytes) -> tuple[str, str]:
    """Write ``data`` content-addressed under the data directory; returns (sha256, path relative to it)."""
    digest = hashlib.sha256(data).hexdigest()
    rel = f"files/{digest[:2]}/{digest}"
    root = Path(ctx.settings.data_dir).resolve()
    dest = root / rel
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)  # atomic: a reader never sees half a file
    return digest, rel


def upload(web: Web) -> Response:
    """``POST /r/{id}/files``: type (by extension, checked against the content's magic bytes) and size are
    enforced before anything is stored."""
    obj, rid18 = visible_parent(web, str(web.path["id"]))
    require(web.ctx, obj, "edit")
    up = web.files.get("file")
    if up is None or not up.filename:
        raise KeelError("Choose a file to upload.", code="REQUIRED_FIELD_MISSING")
    name = re.sub(r"[^\w.\- ()]+", "_", Path(up.filename).name).strip() or "file"
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    allowed = allowed_types(web.ctx)
    if ext not in allowed:
        raise KeelError(f"Files of type '.{ext}' are not allowed; allowed: {', '.join(sorted(allowed))}.",
                        code="INVALID_TYPE_ON_FIELD_IN_RECORD")
    limit = max_bytes(web.ctx)
    data = up.file.read(limit + 1)
    if len(data) > limit:
        raise KeelError(f"The file is larger than the limit of {limit // 1024:,} KB.", code="FILE_TOO_LARGE")
    if not data:
        raise KeelError("The file is empty.", code="INVALID_FIELD")
    if not _sniff_ok(ext, data[:512]):
        raise KeelError(f"The file's content is not a valid .{ext} file.", code="INVALID_TYPE_ON_FIELD_IN_RECORD")
    digest, rel = store_blob(web.ctx, data)
    _save(web, "Attachment", {"Name": name[:255], "ContentType": TYPES[ext][0], "BodyLength": len(data),
                              "StoragePath": rel, "Checksum": digest,
                              "Description": str(web.form.get("description", "")).strip()[:500] or None,
                              **_parent_fields(obj, web.schema().get_object("Attachment"), rid18)})
    return RedirectResponse(f"/r/{rid18}#files", status_code=303)


def _attachment(web: Web, fid: str, reason: str) -> tuple[dict[str, Any], Context]:
    """An attachment whose parent the user can read; anything else is "not found" (no existence oracle)."""
    if not fid.isalnum() or fid[:3] != "00P":
        raise KeelError("No such file.", code="NOT_FOUND")
    sys_ctx = system_context(web.ctx, f"{reason} {fid}")
    recs = query(sys_ctx, "SELECT Id, Name, ContentType, StoragePath, Checksum, ParentRecordId, OwnerId "
                          f"FROM Attachment WHERE Id = {soql_literal(None, fid)}")["records"]
    if not recs or not recs[0].get("ParentRecordId"):
        raise KeelError("No such file.", code="NOT_FOUND")
    try:
        visible_parent(web, str(recs[0]["ParentRecordId"]))
    except KeelError:
        raise KeelError("No such file.", code="NOT_FOUND") from None
    return recs[0], sys_ctx


def download(web: Web) -> Response:
    """``GET /files/{id}``: only with read access to the parent record, with headers that stop the browser
    running or sniffing the content."""
    att, _ = _attachment(web, str(web.path["id"]), "file download")
    root = Path(web.ctx.settings.data_dir).resolve()
    rel = str(att.get("StoragePath") or "")
    digest = str(att.get("Checksum") or "")
    path = (root / rel).resolve()
    if not re.fullmatch(r"files/[0-9a-f]{2}/[0-9a-f]{64}", rel) or not path.is_file() or root not in path.parents \
            or not rel.endswith(digest):
        raise KeelError("The file's content is missing.", code="NOT_FOUND")
    name = str(att.get("Name") or "file")
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    ctype, _magic, inline = TYPES.get(ext, ("application/octet-stream", None, False))
    if str(att.get("ContentType") or "") != ctype:
        inline, ctype = False, "application/octet-stream"
    disposition = "inline" if inline and web.params.get("download") != "1" else "attachment"
    return FileResponse(path, media_type=ctype, filename=name, content_disposition_type=disposition, headers={
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": DOWNLOAD_CSP,
        "Cache-Control": "private, no-store", "Cross-Origin-Resource-Policy": "same-origin"})


def delete_file(web: Web) -> Response:
    """``POST /files/{id}/delete``: the lifecycle decides (owner or administrator, object Delete)."""
    att, _ = _attachment(web, str(web.path["id"]), "file delete")
    delete_many(web.ctx, "Attachment", [str(att["Id"])])
    return RedirectResponse(f"/r/{att['ParentRecordId']}#files", status_code=303)
