"""Outbound: the outbox relay (`relay`) and its subscribers: routing (scoring's), outgoing
webhooks (`webhooks`), alerts (`alerts`)."""
