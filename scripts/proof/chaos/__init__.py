r"""The chaos run: thousands of PayNow events through the local stack while it is being broken.

    .venv/bin/python scripts/proof/chaos --seed 4242 --events 2000 --customers 200  # full run
    .venv/bin/python scripts/proof/chaos --seed 7 --events 300 --customers 40 \
        --kills 2 --firestore-cuts 1 --pubsub-cuts 1                             # CI's small seed

(``python -m scripts.proof.chaos`` from the repository's root is the same.) docs/chaos.md
describes the run, its invariants and the last full run's figures.

It starts its own emulators and functions on free ports (``stack``), runs in queue mode,
and meanwhile (``faults``) kills the worker, cuts the functions' Firestore and Pub/Sub
connections through TCP proxies, and switches to sync mode halfway with messages still in
flight, while the driver (``driver``) delivers the scenario's events (``scenario``) as
PayNow does, a share of them twice. Then it runs ``paynow_reconcile`` once, waits for
quiescence and checks every invariant (``invariants``, one function each) against its own
model of the points rules (``model``: written from the contract, not imported from
``paynow.domain.points``, so the check is independent of the code it checks). The seed
fixes the events, the duplicates and the fault plan, so ``--seed N`` replays a failure's
scenario; the interleavings a loaded machine produces vary from run to run.

It prints a table and a summary line last (``report``), exits 1 when an invariant fails (2
when the stack itself could not run), and writes every webhook answer, fault and verdict
to a JSON report (``--report``), which is what its test reads.
"""
