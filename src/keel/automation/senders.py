"""Delivery of one outbox message: SMTP email (stdlib ``smtplib``) and signed webhooks (``httpx``).

Both carry the message's idempotency key (email ``Message-ID`` and ``X-Keel-Idempotency-Key``; webhook
``Idempotency-Key``), so a receiver can drop the duplicates that at-least-once delivery allows after a crash.
Webhooks are signed with HMAC-SHA256 over ``"<timestamp>.<body>"`` (header ``X-Keel-Signature: t=…,v1=…``),
so a receiver can reject both forgeries and replays of old requests.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import smtplib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import httpx

from keel.settings import Settings


class DeliveryError(Exception):
    """A failed attempt; ``permanent`` failures go straight to the dead-letter state."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: int = 300) -> bool:
    """The receiver's check, provided for integrators and tests."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body), header)


@dataclass
class SmtpSender:
    """Keeps one SMTP connection open across the messages of a dispatcher round (``close`` ends it): a connection,
    STARTTLS and login per message held delivery to ~100 messages a second against a local server."""

    settings: Settings
    _smtp: smtplib.SMTP | None = field(default=None, init=False, repr=False)

    def endpoint(self, payload: Mapping[str, Any]) -> str:
        return f"smtp://{self.settings.smtp_host}:{self.settings.smtp_port}"

    def send(self, payload: Mapping[str, Any], key: str) -> None:
        s = self.settings
        msg = EmailMessage()
        msg["From"] = payload.get("from") or s.smtp_from
        msg["To"] = ", ".join(payload["to"])
        if payload.get("cc"):
            msg["Cc"] = ", ".join(payload["cc"])
        msg["Subject"] = payload.get("subject", "")
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<{key}@keel>"
        msg["X-Keel-Idempotency-Key"] = key
        msg.set_content(payload.get("body", ""))
        try:
            try:
                self._connection().send_message(msg)
            except smtplib.SMTPServerDisconnected:
                # the kept connection was closed by the server while idle: the message was not taken, so one
                # fresh connection is tried before it counts as a failed attempt
                self.close()
                self._connection().send_message(msg)
        except smtplib.SMTPRecipientsRefused as e:
            self.close()
            raise DeliveryError(f"recipients refused: {e.recipients}", permanent=True) from None
        except (OSError, smtplib.SMTPException) as e:
            self.close()
            raise DeliveryError(f"{type(e).__name__}: {e}") from None

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            s = self.settings
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
            try:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password)
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
        return self._smtp

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


@dataclass
class WebhookSender:
    settings: Settings
    client: httpx.Client | None = None

    def endpoint(self, payload: Mapping[str, Any]) -> str:
        u = urlsplit(str(payload["url"]))
        return f"{u.scheme}://{u.netloc}"

    def send(self, payload: Mapping[str, Any], key: str) -> None:
        body = str(payload.get("body", "")).encode()
        secret = payload.get("secret") or (os.environ.get(str(payload["secret_env"]), "")
                                           if payload.get("secret_env") else "") or self.settings.secret_key
        headers = {"Content-Type": str(payload.get("content_type") or "application/json"),
                   "Idempotency-Key": key, "User-Agent": "Keel-Webhook/1"}
        if secret:
            headers["X-Keel-Signature"] = sign(str(secret), int(time.time()), body)
        client = self.client or httpx.Client(timeout=self.settings.webhook_timeout_seconds)
        try:
            resp = client.post(str(payload["url"]), content=body, headers=headers)
        except httpx.HTTPError as e:
            raise DeliveryError(f"{type(e).__name__}: {e}") from None
        finally:
            if self.client is None:
                client.close()
        if resp.status_code >= 300:
            raise DeliveryError(f"HTTP {resp.status_code}", permanent=resp.status_code in (400, 401, 403, 404, 410))
