"""Keel: a metadata-driven CRM platform that speaks Salesforce\x27s APIs."""
