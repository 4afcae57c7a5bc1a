"""Real-time model serving: a local server that speaks the Databricks Model Serving API.

contract (endpoint configs, API errors) - payload (the four input formats, signature
checks) - entity (a served model version, dynamic batching) - endpoints (states,
zero-downtime updates, traffic split) - capture (inference tables) - online_store (feature
lookups) - metrics (Prometheus) - app (HTTP routes, auth, limits) - server (run, start,
stop) - client (the REST calls) - rollout (the deployment job's gradual rollout).
"""
