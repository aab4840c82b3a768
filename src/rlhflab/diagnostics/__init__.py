"""Diagnostics: see what RLHF did — Goodhart curves of gold against optimisation pressure (`goodhart`)."""
