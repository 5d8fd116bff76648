"""Vendor connectors behind one interface (see :mod:`integrations.connectors.base`).

Pure Python: no Django, no settings, no environment. The sync services import the vendor
modules they need (``salesforce``, ``hubspot``, ``mixpanel``) so an unused vendor SDK is never
loaded.
"""
