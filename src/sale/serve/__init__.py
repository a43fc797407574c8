"""`sale serve`: an OpenAI-compatible endpoint that holds an auction on a task's first
request and pins the task's later requests to the winner, with its plan.

- `keys`: a request's task key, task text and environment description;
- `bindings`: task key -> winner, plan and auction id, in SQLite with a time-to-live;
- `service`: auctions (through `SALERouter.route`), bindings and forwarding (through
  the pool's agents: one client, one budget, one ledger);
- `app`: the FastAPI app (`create_app`); `metrics`: its Prometheus metrics.

FastAPI, uvicorn and prometheus_client come with the ``serve`` extra.
"""
