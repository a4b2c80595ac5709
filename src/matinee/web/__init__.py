"""The web dashboard (``matinee ui``) and the REST API (``/api/v1``) over one store.

:func:`matinee.web.app.create_app` builds the ASGI app; access control lives
in :mod:`matinee.web.auth`. Nothing here is imported by ``import matinee``.
"""
