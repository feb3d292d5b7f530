"""Long-lived services of a server process, built at start-up (app.py)."""
