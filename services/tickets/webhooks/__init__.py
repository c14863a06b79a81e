"""Outbound webhooks: every ticket and SLA event, signed (Standard Webhooks), to the URLs admins subscribe."""
