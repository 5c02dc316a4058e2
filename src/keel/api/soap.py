"""SOAP ``login`` and ``logout`` at ``/services/Soap/u/{ver}`` (salesforce-api.md §1.2).

The response format is exact on purpose: simple-salesforce reads ``sessionId``/``serverUrl`` by unprefixed tag
name and strips ``<sessionId>`` textually, jsforce needs ``userId`` and ``organizationId`` too, and a failed login
needs both ``faultstring`` (jsforce, django) and the ``sf:``-prefixed detail elements (simple-salesforce).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html import escape

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from keel.api.backend import AuthBackend, Session
from keel.errors import KeelError

XML_TYPE = "text/xml;charset=UTF-8"
INVALID_LOGIN = "Invalid username, password, security token; or user locked out."


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, name: str) -> ET.Element | None:
    return next((e for e in root.iter() if _local(e.tag) == name), None)


def fault(code: str, message: str, *, status: int = 500) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        f'<detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}</sf:exceptionCode>'
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:LoginFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, status, media_type=XML_TYPE)


def login_result(session: Session, base: str, version: str) -> str:
    server = f"{base}/services/Soap/u/{version}/{session.org_id[:15]}"
    meta = f"{base}/services/Soap/m/{version}/{session.org_id[:15]}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result>'
        f"<metadataServerUrl>{escape(meta)}</metadataServerUrl><passwordExpired>false</passwordExpired>"
        f"<sandbox>false</sandbox><serverUrl>{escape(server)}</serverUrl>"
        f"<sessionId>{escape(session.token)}</sessionId><userId>{session.user_id}</userId>"
        f"<userInfo><organizationId>{session.org_id}</organizationId><userId>{session.user_id}</userId>"
        f"<userName>{escape(session.username)}</userName></userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


async def login_endpoint(request: Request) -> Response:
    version = request.path_params["ver"].strip("/").split("/")[0] or "59.0"
    raw = await request.body()
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return fault("INVALID_SOAP", "The request is not a well-formed SOAP envelope.")
    state = request.app.state
    auth: AuthBackend = state.auth
    logout = _find(root, "logout")
    if logout is not None:
        sid = _find(root, "sessionId")
        if sid is not None and sid.text:
            await run_in_threadpool(auth.revoke, state.ctx, sid.text.strip())
        return Response('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
                        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                        'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><logoutResponse/></soapenv:Body>'
                        "</soapenv:Envelope>", 200, media_type=XML_TYPE)
    login = _find(root, "login")
    user = _find(login, "username") if login is not None else None
    pw = _find(login, "password") if login is not None else None
    if login is None or user is None or pw is None:
        return fault("INVALID_SOAP", "Only the login and logout operations are supported.")
    try:
        ip = request.client.host if request.client else ""
        session = await run_in_threadpool(lambda: auth.login(state.ctx, (user.text or "").strip(), pw.text or "",
                                                             ip=ip))
    except KeelError:
        return fault("INVALID_LOGIN", INVALID_LOGIN)
    if not session.api_enabled:
        await run_in_threadpool(auth.revoke, state.ctx, session.token)
        return fault("API_CURRENTLY_DISABLED", "API is disabled for this User")
    base = f"{request.url.scheme}://{request.url.netloc}"
    return Response(login_result(session, base, version), 200, media_type=XML_TYPE)
