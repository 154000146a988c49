"""The benchmark: the pipeline on the local emulators, each figure beside a same-run floor.

    .venv/bin/python -m scripts.proof.bench                # --size small --out docs/benchmarks
    .venv/bin/python -m scripts.proof.bench --size full --check   # exit 1: a target missed
    .venv/bin/python -m scripts.proof.bench --size tiny --out /tmp/bench   # what CI runs

A floor is the least work the contract needs, plus serving where a target says so, and
never what the code happens to do. The parts: ``floors`` (that work, with Google's
clients directly) and ``served`` (the same behind functions-framework), ``workload``
(the code: webhook, worker, end to end), ``measurement`` (series, rounds, the client),
``stack`` (emulators and functions from ``scripts.local.localstack``), ``run`` (one run,
in interleaved rounds), ``report`` (the targets and ``results.md``), ``charts``, and
``profile`` (py-spy inside the webhook). docs/benchmarks/README.md explains the method.
"""
