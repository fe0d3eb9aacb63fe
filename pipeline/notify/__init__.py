"""Notifications through apprise: notifiers, routing, templates, a durable outbox."""
