"""Automation: record-triggered flows, approval processes, scheduled paths and the outbox dispatcher.

``keel.automation`` implements the lifecycle hook protocol of ``keel.records.hooks``; ``keel.services.automation``
puts it into a Context (``wire_automation``). Side effects (email, webhooks) are outbox rows written in the same
transaction as the change and delivered after commit by ``dispatcher.Dispatcher``.
"""
