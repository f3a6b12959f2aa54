"""The local web page: the review queue, the daemon's status with plots, and ``/metrics``.

Optional (the ``web`` extra: Flask, prometheus_client) and imported only when ``web.listen``
is set, so a daemon without the page loads none of it. :class:`rotwatchd.web.page.WebPage`
hangs it on a running :class:`rotwatchd.service.daemon.Daemon`; ``history`` and ``plots`` are pure,
``app`` is the Flask application, ``server`` the socket side (no periodic wake-ups),
``activation`` the sockets systemd passes (``web.listen: systemd``), ``guard`` the access
rules.
"""
