"""Alerts: the outbox written with each case change; feeds and webhooks read from it."""
