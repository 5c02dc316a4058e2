"""The web app: server-rendered Jinja2 and htmx over the same services as the API."""
