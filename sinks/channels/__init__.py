"""Delivery channels: every way Riffle sends a message to people or other systems.

:mod:`.base` holds the :class:`~.base.Channel` protocol, its errors, retries and the
HTTP POST; one module per kind (:mod:`.webhook`, :mod:`.slack`, :mod:`.email`,
:mod:`.alertmanager`); :mod:`.registry` maps each receiver kind of the spec's
``notifications:`` to the function that builds its channel. A new channel is a
config model in ``config/notifications.py`` and a module here that registers its
builder; the contract tests run against every registered kind.
"""
