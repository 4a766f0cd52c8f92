"""The production profile: PostgreSQL, Dagster's services, the poller and MLflow on one machine.

``python -m quant_assets.production start|stop|status`` (``scripts/production``, ``make
production-start``) runs each service as its own process on 127.0.0.1; ``stack.py`` holds how.
Nothing here imports Dagster: the services are Dagster's own command-line programs.
"""
