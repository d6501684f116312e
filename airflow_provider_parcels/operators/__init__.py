"""Operators: bulk tracking into the warehouse, and order creation."""
