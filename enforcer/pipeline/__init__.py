"""The pipeline: the only place that joins the decision core with the store.

`run` is the policy -> desired state -> plan -> apply sequence the CLI, the API and the daemon
call; `daemon` is the APScheduler wiring that runs it on a schedule; `metrics` the process-wide
Prometheus registry of the server and the daemon.
"""
