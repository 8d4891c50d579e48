"""The storefront's domain: aggregates, commands, events and rules.

Pure Python: nothing here imports SQLAlchemy, strawberry or elasticsearch.
"""
