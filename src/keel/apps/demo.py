"""Demo users, one per persona, for ``keel up``'s first run and the persona tests. Install-time only."""

from __future__ import annotations

from keel.context import Context
from keel.services.query import query
from keel.services.security import assign_permission_set
from keel.services.users import create_user

# (persona, username, first, last, profile, role, permission sets)
PERSONAS: tuple[tuple[str, str, str, str, str, str | None, tuple[str, ...]], ...] = (
    ("Recruiter", "recruiter@keel.local", "Rita", "Recruiter", "Standard User", None,
     ("Recruiting_Recruiter",)),
    ("Adjudicator (background)", "adjudicator@keel.local", "Adam", "Adjudicator", "Standard User", None,
     ("Recruiting_Background_Adjudicator",)),
    ("Hiring manager", "hiringmanager@keel.local", "Hana", "Manager", "Standard User", None,
     ("Recruiting_Hiring_Manager",)),
    ("Recruiting director (approves requisitions)", "director@keel.local", "Dora", "Director", "Standard User",
     "Recruiting Director", ("Recruiting_Admin",)),
    ("Procurement officer", "procurement@keel.local", "Paul", "Procurement", "Standard User",
     "Procurement Manager", ("Vendor_Procurement_Officer",)),
    ("Purchase requester", "requester@keel.local", "Quinn", "Requester", "Standard User", None,
     ("Vendor_Requester",)),
    ("Grants manager", "grants@keel.local", "Grace", "Grants", "Standard User", None,
     ("Philanthropy_Grants_Manager",)),
    ("Charity finance lead", "charityfinance@keel.local", "Chris", "Finance", "Standard User", None,
     ("Philanthropy_Charity_Finance",)),
)


def user_id(ctx: Context, username: str) -> str | None:
    rows = query(ctx, f"SELECT Id FROM User WHERE Username = '{username}'")["records"]
    return str(rows[0]["Id"]) if rows else None


def create_demo_users(ctx: Context, password: str) -> list[tuple[str, str, str]]:
    """Create the persona users that do not exist yet (idempotent); returns (persona, username, password)."""
    out = [("Administrator", "admin@keel.local", "(printed when the database was created)")]
    for persona, username, first, last, profile, role, sets in PERSONAS:
        if user_id(ctx, username) is None:
            uid = create_user(ctx, username=username, password=password, first_name=first, last_name=last,
                              email=username, profile=profile, role=role)
            with ctx.db.transaction() as conn:
                for ps in sets:
                    assign_permission_set(ctx, conn, uid, ps)
        out.append((persona, username, password))
    return out
