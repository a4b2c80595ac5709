"""Personalization apps built on core's public API: ``recs``, ``artwork``, ``sim``.

``core`` never imports from here (a test checks it).
"""
