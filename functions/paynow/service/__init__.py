"""Use cases: ``accept`` a webhook, ``process`` a queued event, ``reconcile`` stuck ones."""
