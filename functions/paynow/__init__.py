"""PayNow webhooks turned into in-app points, exactly once, in per-customer order.

Layout: ``domain`` is pure Python (signature, parsing, points rules, errors);
``adapters`` wrap Firestore, Pub/Sub, Secret Manager and OIDC; ``service``
holds the use cases the entry points in ``functions/main.py`` call.
"""
