"""The built-in dashboard (``GET /dashboard``): a live view readable without Grafana."""
