"""strawberry's resolver decorators, typed for mypy strict, and described.

`@strawberry.field(description=...)` and `@strawberry.subscription(...)` are
typed as returning Any, which strict mypy refuses as an untyped decorator. These
hand back strawberry's own field, declared as the resolver it wraps, as
strawberry's `field(resolver=...)` overload itself declares it, so mypy keeps
checking each resolver. The description is required: the docs pane shows
nothing for a field without one (tests/unit/test_schema_descriptions.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import strawberry

__all__ = ["field", "subscription"]

Resolver = TypeVar("Resolver", bound=Callable[..., Any])


def field(*, description: str) -> Callable[[Resolver], Resolver]:
    """A field answered by the decorated method."""
    decorator: Callable[[Resolver], Resolver] = strawberry.field(description=description)
    return decorator


def subscription(*, description: str) -> Callable[[Resolver], Resolver]:
    """A subscription whose notifications the decorated method yields."""
    decorator: Callable[[Resolver], Resolver] = strawberry.subscription(description=description)
    return decorator
