"""The web view on the device: live annotated stream, slide reports and a review queue.

``edge-app --web`` serves it beside the capture loop; ``edge-app serve --out STORE``
serves a store for browsing only. Flask is imported only by :mod:`edge_app.web.app`
and :mod:`edge_app.web.server`, so the review records and their export
(:mod:`edge_app.web.reviews`) and the live state (:mod:`edge_app.web.live`) load
without it.
"""
