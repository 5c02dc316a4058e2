"""Automation: flows, approvals, scheduled actions and the outbox dispatcher."""
