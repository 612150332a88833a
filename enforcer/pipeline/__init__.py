"""The pipeline: the only place that joins the decision core with the store, and the store with
the sinks.

`load` reads the policy into the desired state (no store); `run` is the plan -> apply
sequence and the store -> sinks step the CLI, the console and the daemon call; `daemon` is the APScheduler wiring that runs them on a
schedule (and expiry, event retention and discovery rollups); `metrics` the process-wide
Prometheus registry of the server and the daemon.
"""
