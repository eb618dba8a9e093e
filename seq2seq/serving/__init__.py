"""The HTTP API and its attention page: the FastAPI app, the batcher that shares a model between requests,
and the page's static files."""
