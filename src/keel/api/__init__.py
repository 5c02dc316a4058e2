"""Salesforce-compatible REST, SOAP login, OAuth2 and Bulk APIs."""
