"""Approvals, notes, files, sharing and optimistic concurrency on record pages, over HTTP on every backend.

The recruiter submits a Draft position; the record locks (the lifecycle refuses the recruiter's edit and the page
says why); the administrator approves from "Items to approve"; the on_approve update runs. Files go to custom
objects (ParentRecordId), are typed and sized, content-addressed under the data directory and only downloadable
with read access to the parent, which the sharing screen grants and takes away."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from keel.cli.asgi import build_app
from keel.records import save_many
from keel.services.automation import deploy_automation, wire_automation
from keel.services.query import query
from keel.services.security import system_context

from .conftest import ADMIN, ADMIN_PW, RECRUITER, RECRUITER_PW, SECRET, Org, csrf_of, login

APPROVALS = Path(__file__).parent / "fixtures" / "approvals"
PDF = b"%PDF-1.4\n1 0 obj << /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >> endobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(scope="module", autouse=True)
def approval_process(web_org: Org) -> None:
    deploy_automation(wire_automation(web_org.ctx), APPROVALS)


def _status(org: Org, rid: str) -> str:
    sysctx = system_context(org.ctx, "test")
    return str(query(sysctx, f"SELECT Status__c FROM Position__c WHERE Id = '{rid}'")["records"][0]["Status__c"])


def _post(c: TestClient, page_url: str, url: str, data: dict[str, str], **kw: Any) -> httpx.Response:
    token = csrf_of(c.get(page_url).text)
    r: httpx.Response = c.post(url, data={**data, "csrf_token": token}, follow_redirects=False, **kw)
    return r


def test_submit_lock_approve(admin: TestClient, recruiter: TestClient, web_org: Org) -> None:
    rid = web_org.positions[10]  # Draft
    page = recruiter.get(f"/r/{rid}")
    assert "Submit for approval" in page.text and "Approval history" in page.text
    r = recruiter.post(f"/r/{rid}/approval", data={"action": "submit", "process": "Position_Approval",
                                                   "comments": "<b>please</b>"}, follow_redirects=False)
    assert r.status_code == 403  # no CSRF token
    r = _post(recruiter, f"/r/{rid}", f"/r/{rid}/approval",
              {"action": "submit", "process": "Position_Approval", "comments": "<b>please</b>"})
    assert r.status_code == 303
    page = recruiter.get(f"/r/{rid}")
    assert "locked while it is pending approval" in page.text and 'value="recall"' in page.text
    assert 'value="approve"' not in page.text and "&lt;b&gt;please&lt;/b&gt;" in page.text
    # the lifecycle refuses the recruiter's edit while pending, and the form says why
    form = recruiter.get(f"/r/{rid}/edit")
    r = recruiter.post(f"/r/{rid}/edit", data={"csrf_token": csrf_of(form.text), "Name": "Renamed while locked",
                                               "Status__c": "Draft"})
    assert r.status_code == 422 and "locked" in r.text
    inbox = admin.get("/approvals")
    assert "Position 010" in inbox.text
    wi = re.search(r'name="workitem" value="([A-Za-z0-9]+)"', admin.get(f"/r/{rid}").text)
    assert wi
    # the recruiter cannot answer their own request
    r = _post(recruiter, f"/r/{rid}", f"/r/{rid}/approval", {"action": "approve", "workitem": wi.group(1)})
    assert r.status_code == 400 and "cannot approve" in r.text
    r = _post(admin, "/approvals", f"/r/{rid}/approval",
              {"action": "approve", "workitem": wi.group(1), "comments": "ok", "next": "/approvals"})
    assert r.status_code == 303 and r.headers["location"] == "/approvals"
    assert _status(web_org, rid) == "Open"
    page = recruiter.get(f"/r/{rid}")
    assert "Approved" in page.text and "locked" not in page.text and "Position 010" not in admin.get(
        "/approvals").text


def test_recall_unlocks(recruiter: TestClient, web_org: Org) -> None:
    rid = web_org.positions[12]
    assert _post(recruiter, f"/r/{rid}", f"/r/{rid}/approval",
                 {"action": "submit", "process": "Position_Approval"}).status_code == 303
    assert _post(recruiter, f"/r/{rid}", f"/r/{rid}/approval", {"action": "recall"}).status_code == 303
    page = recruiter.get(f"/r/{rid}")
    assert "Removed" in page.text and "locked while" not in page.text and _status(web_org, rid) == "Draft"


def test_concurrent_edit_is_refused_with_a_clear_message(admin: TestClient, web_org: Org) -> None:
    rid = web_org.positions[20]
    form = admin.get(f"/r/{rid}/edit")
    version = re.search(r'name="__version__" value="(\d+)"', form.text)
    assert version
    save_many(system_context(web_org.ctx, "test"), "Position__c", [{"Id": rid, "Headcount__c": 3}])
    fields = {"Name": "Mine", "Status__c": "Draft", "Department__c": "Patrol"}
    r = admin.post(f"/r/{rid}/edit", data={"csrf_token": csrf_of(form.text), **fields,
                                           "__version__": version.group(1)})
    assert r.status_code == 409 and "Someone else saved this record" in r.text
    fresh = admin.get(f"/r/{rid}/edit")
    current = re.findall(r'name="__version__" value="(\d+)"', fresh.text)[0]
    r = admin.post(f"/r/{rid}/edit", data={"csrf_token": csrf_of(fresh.text), **fields, "__version__": current},
                   follow_redirects=False)
    assert r.status_code == 303, re.findall(r'(?s)class="(?:error|field-error)"[^>]*>(.*?)</', r.text)


def test_notes_on_custom_objects(recruiter: TestClient, admin: TestClient, web_org: Org) -> None:
    rid = web_org.candidates[1]
    assert _post(recruiter, f"/r/{rid}", f"/r/{rid}/notes",
                 {"title": "Phone screen", "body": "<script>x()</script> good"}).status_code == 303
    assert _post(recruiter, f"/r/{rid}", f"/r/{rid}/notes",
                 {"title": "Private thought", "body": "mine", "private": "on"}).status_code == 303
    page = recruiter.get(f"/r/{rid}")
    assert "Phone screen" in page.text and "&lt;script&gt;x()&lt;/script&gt;" in page.text
    assert "Private thought" in page.text
    other = admin.get(f"/r/{rid}").text
    assert "Phone screen" in other and "Private thought" not in other


def test_file_upload_download_and_headers(recruiter: TestClient, web_org: Org) -> None:
    rid = web_org.candidates[2]
    r = _post(recruiter, f"/r/{rid}", f"/r/{rid}/files", {}, files={"file": ("resume.pdf", PDF, "text/html")})
    assert r.status_code == 303
    page = recruiter.get(f"/r/{rid}")
    fid = re.search(r'href="/files/(00P[A-Za-z0-9]+)\?download=1">resume.pdf<', page.text)
    assert fid
    d = recruiter.get(f"/files/{fid.group(1)}")
    assert d.status_code == 200 and d.content == PDF
    assert d.headers["content-type"] == "application/pdf" and d.headers["x-content-type-options"] == "nosniff"
    assert d.headers["content-disposition"].startswith("attachment")  # PDF may carry JavaScript
    assert "sandbox" in d.headers["content-security-policy"] and "default-src 'none'" in d.headers[
        "content-security-policy"]
    stored = list((Path(web_org.ctx.settings.data_dir) / "files").rglob("*"))
    assert any(p.is_file() and p.stat().st_size == len(PDF) for p in stored)
    r = _post(recruiter, f"/r/{rid}", f"/r/{rid}/files", {}, files={"file": ("pic.png", PNG, "image/png")})
    fid2 = re.search(r'href="/files/(00P[A-Za-z0-9]+)\?download=1">pic.png<', recruiter.get(f"/r/{rid}").text)
    assert fid2 and recruiter.get(f"/files/{fid2.group(1)}").headers["content-disposition"].startswith("inline")
    assert recruiter.get(f"/files/{fid2.group(1)}?download=1").headers["content-disposition"].startswith(
        "attachment")
    for name, body, why in (("run.exe", b"MZ", "not allowed"), ("evil.html", b"<script>", "not allowed"),
                            ("fake.pdf", b"<html><script>alert(1)</script>", "not a valid"),
                            ("x.svg", b"<svg onload=alert(1)>", "not allowed")):
        r = _post(recruiter, f"/r/{rid}", f"/r/{rid}/files", {}, files={"file": (name, body, "text/plain")})
        assert r.status_code == 400 and why in r.text, name
    assert recruiter.post(f"/r/{rid}/files", files={"file": ("a.txt", b"x", "text/plain")}).status_code == 403


def test_upload_limits_come_from_settings(web_org: Org) -> None:
    ctx = dataclasses.replace(web_org.ctx, settings=web_org.ctx.settings.with_overrides(
        upload_max_bytes=100, upload_types="txt,svg,html"))
    with TestClient(build_app(ctx, background=False)) as c:
        login(c, RECRUITER, RECRUITER_PW)
        rid = web_org.candidates[3]
        r = _post(c, f"/r/{rid}", f"/r/{rid}/files", {}, files={"file": ("big.txt", b"x" * 101, "text/plain")})
        assert r.status_code == 400 and "larger than" in r.text
        r = _post(c, f"/r/{rid}", f"/r/{rid}/files", {}, files={"file": ("resume.pdf", PDF, "application/pdf")})
        assert r.status_code == 400
        for name in ("logo.svg", "page.html"):
            r = _post(c, f"/r/{rid}", f"/r/{rid}/files", {}, files={"file": (name, b"<svg onload=alert(1)>", "")})
            assert r.status_code == 303
            fid = re.search(rf'href="/files/(00P[A-Za-z0-9]+)\?download=1">{re.escape(name)}<', c.get(f"/r/{rid}").text)
            assert fid
            d = c.get(f"/files/{fid.group(1)}")
            assert d.headers["content-disposition"].startswith("attachment") and "sandbox" in d.headers[
                "content-security-policy"]


def test_sharing_grants_record_and_file_access(admin: TestClient, recruiter: TestClient, web_org: Org) -> None:
    acct = save_many(web_org.ctx.as_actor(web_org.ctx.actor), "Account", [{"Name": "Private Vendor"}])[0].id
    assert acct
    r = _post(admin, f"/r/{acct}", f"/r/{acct}/files", {}, files={"file": ("coi.pdf", PDF, "application/pdf")})
    assert r.status_code == 303
    page = admin.get(f"/r/{acct}")
    assert 'href="/r/' + acct + '/sharing"' in page.text
    fid = re.search(r'href="/files/(00P[A-Za-z0-9]+)\?download=1">coi.pdf<', page.text)
    assert fid
    assert recruiter.get(f"/r/{acct}").status_code == 404
    assert recruiter.get(f"/files/{fid.group(1)}").status_code == 404
    assert recruiter.get(f"/r/{acct}/sharing").status_code == 404
    sharing = admin.get(f"/r/{acct}/sharing")
    assert sharing.status_code == 200
    rec_id = re.search(r'<option value="(005[A-Za-z0-9]+)">Recruiter</option>', sharing.text)
    assert rec_id
    r = _post(admin, f"/r/{acct}/sharing", f"/r/{acct}/sharing", {"grantee": rec_id.group(1), "level": "Read"})
    assert r.status_code == 303
    assert "Recruiter" in admin.get(f"/r/{acct}/sharing").text.split("Add a share")[0]
    assert recruiter.get(f"/r/{acct}").status_code == 200
    assert recruiter.get(f"/files/{fid.group(1)}").status_code == 200
    assert "Sharing</a>" not in recruiter.get(f"/r/{acct}").text  # read access is not full access
    assert recruiter.get(f"/r/{acct}/sharing").status_code == 403
    r = _post(admin, f"/r/{acct}/sharing", f"/r/{acct}/sharing/remove", {"grantee": rec_id.group(1)})
    assert r.status_code == 303
    assert recruiter.get(f"/r/{acct}").status_code == 404
    assert recruiter.get(f"/files/{fid.group(1)}").status_code == 404


def test_no_hidden_field_on_notes_files_or_approval_history(admin: TestClient, recruiter: TestClient,
                                                            web_org: Org) -> None:
    rid = web_org.positions[14]
    _post(recruiter, f"/r/{rid}", f"/r/{rid}/notes", {"title": "n", "body": "b"})
    _post(recruiter, f"/r/{rid}", f"/r/{rid}/files", {}, files={"file": ("cv.txt", b"hello", "text/plain")})
    _post(recruiter, f"/r/{rid}", f"/r/{rid}/approval", {"action": "submit", "process": "Position_Approval"})
    assert SECRET in admin.get(f"/r/{rid}").text  # the probe is real
    for path in (f"/r/{rid}", "/approvals"):
        r = recruiter.get(path)
        assert r.status_code == 200 and SECRET not in r.text, path
    assert "Approval history" in recruiter.get(f"/r/{rid}").text


def test_admin_login_still_works(web_org: Org) -> None:
    with TestClient(build_app(web_org.ctx, background=False)) as c:
        login(c, ADMIN, ADMIN_PW)
        assert c.get("/approvals").status_code == 200


def test_file_delete_goes_through_the_lifecycle(admin: TestClient, recruiter: TestClient, web_org: Org) -> None:
    rid = web_org.candidates[5]
    _post(recruiter, f"/r/{rid}", f"/r/{rid}/files", {}, files={"file": ("old.txt", b"old cv", "text/plain")})
    page = recruiter.get(f"/r/{rid}").text
    fid = re.search(r'href="/files/(00P[A-Za-z0-9]+)\?download=1">old.txt<', page)
    assert fid and f'action="/files/{fid.group(1)}/delete"' not in page  # no Delete on Attachment
    r = _post(recruiter, f"/r/{rid}", f"/files/{fid.group(1)}/delete", {})
    assert r.status_code in (400, 403) and "old.txt" in recruiter.get(f"/r/{rid}").text
    r = _post(admin, f"/r/{rid}", f"/files/{fid.group(1)}/delete", {})
    assert r.status_code == 303 and "old.txt" not in recruiter.get(f"/r/{rid}").text
    assert recruiter.get(f"/files/{fid.group(1)}").status_code == 404
