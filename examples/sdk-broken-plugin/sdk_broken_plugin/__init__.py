"""Deliberately broken deploy-sdk plugins; each module breaks the contract in its own way."""
