"""The labeling web app (FastAPI): people judge queries from the feedback store."""
