"""Security's own system tables: sessions, login throttling, connected apps, share rows and the closures.

They live beside (not inside) ``storage/system.py`` because only ``security/`` reads them. Share rows and the
closures are what the visibility predicate joins to, so each is indexed for exactly that probe:
``keel_share(object_id, record_id, principal)`` and ``keel_principal_member(principal, user_id)``.

A *principal* is one integer: a user's pk, or a group/role/role-and-subordinates pk tagged in the high bits
(see ``principals.py``), so one ``IN`` list covers "me and every group I am in".
"""

from __future__ import annotations

import sqlalchemy as sa

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

security = sa.MetaData()

sessions = sa.Table(
    "keel_session", security,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # session | api | oauth
    sa.Column("client_id", sa.String(80)),
    sa.Column("created_date", sa.DateTime, nullable=False),
    sa.Column("last_seen", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime),
    sa.Column("ip", sa.String(64)),
    sa.Index("ix_keel_session_user", "user_id"),
)

login_ip = sa.Table(
    "keel_login_ip", security,
    sa.Column("ip", sa.String(64), primary_key=True),
    sa.Column("window_start", sa.DateTime, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
)

connected_apps = sa.Table(
    "keel_connected_app", security,
    sa.Column("id", _BIG, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(80), nullable=False),
    sa.Column("client_id", sa.String(80), nullable=False, unique=True),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("run_as_user_id", sa.BigInteger),
    sa.Column("created_date", sa.DateTime, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("certificate", sa.Text),  # PEM X.509: verifies the app's JWT bearer assertions
    sa.Column("callback_urls", sa.Text),  # newline-separated: the only redirect_uri values the web-server flow takes
)

# Authorization codes of the web-server flow: single-use, short-lived, stored as SHA-256 digests and bound to the
# client, the redirect_uri, the user and the PKCE challenge they were issued for.
oauth_codes = sa.Table(
    "keel_oauth_code", security,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(80), nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("challenge", sa.String(128)),
    sa.Column("challenge_method", sa.String(8)),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("created_date", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("used_at", sa.DateTime),
)

# Which users may use which app without a password: a user approves an app on the authorize screen, or an
# administrator pre-authorizes them. The JWT bearer grant requires a row (Salesforce: "user hasn't approved this
# consumer"). Keyed by client id, not the app's pk, which SQLite may reuse after a delete.
oauth_approvals = sa.Table(
    "keel_oauth_approval", security,
    sa.Column("client_id", sa.String(80), primary_key=True),
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("created_date", sa.DateTime, nullable=False),
    sa.Column("approved_by_id", sa.BigInteger),
)

totp_state = sa.Table(
    "keel_totp_state", security,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("last_step", sa.BigInteger, nullable=False),
)

shares = sa.Table(
    "keel_share", security,
    sa.Column("id", _BIG, primary_key=True, autoincrement=True),
    sa.Column("object_id", sa.Integer, nullable=False),
    sa.Column("record_id", sa.BigInteger, nullable=False),
    sa.Column("principal", sa.BigInteger, nullable=False),
    sa.Column("access_level", sa.SmallInteger, nullable=False),  # 1 Read, 2 Edit, 3 All
    sa.Column("row_cause", sa.String(40), nullable=False),  # Manual | <programmatic reason>
    sa.Column("created_date", sa.DateTime, nullable=False),
    sa.Column("created_by_id", sa.BigInteger),
    sa.Column("share_id", sa.BigInteger),  # the row of the <Object>Share sObject this mirrors, if any
    sa.UniqueConstraint("object_id", "record_id", "principal", "row_cause", name="ux_keel_share"),
    sa.Index("ix_keel_share_principal", "principal", "object_id"),
)

role_closure = sa.Table(
    "keel_role_closure", security,
    sa.Column("ancestor_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("role_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("depth", sa.Integer, nullable=False),
)

principal_members = sa.Table(
    "keel_principal_member", security,
    sa.Column("principal", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Index("ix_keel_principal_member_user", "user_id"),
)

# Each role's place in a pre-order walk of the role tree: the roles strictly below a role are exactly those with
# ``lo < position <= hi`` of it, so "anything below me" is one range (``security/reach.py``).
role_spans = sa.Table(
    "keel_role_span", security,
    sa.Column("role_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("lo", sa.Integer, nullable=False),
    sa.Column("hi", sa.Integer, nullable=False),
)

# Where each share reaches in the role tree: one row per (shared record, position of the role of a user the
# share's grantee covers), with the highest level granted there. The managers above that role inherit the share
# (Salesforce's "grant access using hierarchies"), which the predicate tests as one range probe of this index.
# Derived from keel_share and the closures; ``reach.refresh`` and ``reach.rebuild`` keep it.
share_reach = sa.Table(
    "keel_share_reach", security,
    sa.Column("object_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("pos", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("record_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("access_level", sa.SmallInteger, primary_key=True, autoincrement=False),
    # "Does this record reach a role below mine": the per-record probe of a manager's sorted list.
    sa.Index("ix_keel_share_reach_record", "object_id", "record_id", "pos", "access_level"),
    sqlite_with_rowid=False,
)


# Each active user's place in the role tree (``security/lineage.py``), copied onto every record they own: the
# depth of their role and its ancestors at depths 1..4 (all NULL without a role). Recalculation diffs it to find
# the users whose records must be rewritten; saves read it to stamp the records they insert or give a new owner.
owner_lineage = sa.Table(
    "keel_owner_lineage", security,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("role_depth", sa.SmallInteger),  # NULL: an active user without a role
    *(sa.Column(f"role_{d}", sa.BigInteger) for d in range(1, 5)),
)


def create_security_tables(conn: sa.Connection) -> None:
    """Idempotent: ``keel init`` calls it, and so does every upgrade path."""
    security.create_all(conn, checkfirst=True)
