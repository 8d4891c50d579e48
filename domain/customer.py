"""Customer: who orders. Erasable: personal data goes, the orders stay."""

from __future__ import annotations

from dataclasses import dataclass

from domain.aggregate import Aggregate
from domain.errors import RuleBroken
from domain.events import CustomerErased, CustomerRegistered
from domain.rules import EmailMustBeWellFormed, TextMustFit

__all__ = ["Customer", "CustomerIsErased"]


class CustomerIsErased(RuleBroken):
    code = "CUSTOMER_ERASED"


@dataclass(eq=False)
class Customer(Aggregate):
    email: str | None = None
    name: str | None = None
    erased: bool = False

    @classmethod
    def register(cls, id: str, *, email: str, name: str) -> Customer:
        customer = cls(
            id,
            email=EmailMustBeWellFormed.check(email),
            name=TextMustFit.check(name, "name", "name"),
        )
        customer.record(
            CustomerRegistered(id, email=customer.email or "", name=customer.name or "")
        )
        return customer

    def erase(self) -> None:
        if self.erased:
            return
        self.email = self.name = None
        self.erased = True
        self.record(CustomerErased(self.id))

    def can_order(self) -> None:
        if self.erased:
            raise CustomerIsErased("an erased customer cannot place orders", field="customerId")
