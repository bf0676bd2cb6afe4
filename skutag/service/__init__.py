"""The HTTP service (FastAPI): tagging API, review dashboard, retraining from corrections."""
