"""Alembic migrations of the feedback store's schema; `feedback.migrate` runs them."""
