"""Vendor connectors behind one interface (see :mod:`integrations.connectors.base`).

Pure Python: no Django, no settings, no environment. Each vendor module (``salesforce``,
``hubspot``, ``mixpanel``) imports its own SDK; nothing here imports them, so importing the
interface alone loads no vendor SDK (the sync services and ``integrations.config`` import all
three).
"""
