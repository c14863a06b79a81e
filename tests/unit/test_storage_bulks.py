"""Update bulks small enough that concurrent writers cannot exhaust FerretDB's connection pool."""

from __future__ import annotations

from typing import Any

from shared.storage import UPDATE_BULK_FERRETDB, Capabilities, Storage


class Collection:
    name = "tickets"

    def __init__(self) -> None:
        self.commands: list[int] = []

    async def bulk_write(self, ops: list[Any], ordered: bool = True) -> None:
        self.commands.append(len(ops))


def storage(ferretdb: bool) -> Storage:
    s = Storage.__new__(Storage)
    s.caps = Capabilities(ferretdb=ferretdb, sql_side_indexes=False)
    return s


async def test_on_ferretdb_an_update_command_holds_at_most_ten_statements() -> None:
    coll = Collection()
    updates = [({"_id": f"TK-{i}"}, {"$set": {"assignee": "a"}}) for i in range(95)]
    await storage(ferretdb=True).update_batch(coll, updates, upsert=True)  # type: ignore[arg-type]
    assert coll.commands == [10] * 9 + [5]
    # four processes writing at once (two of tickets, two of SLA) hold well under the pool of 100
    assert 4 * UPDATE_BULK_FERRETDB <= 50


async def test_on_mongodb_one_command_takes_them_all() -> None:
    coll = Collection()
    await storage(ferretdb=False).update_batch(coll, [({"_id": i}, {"$set": {"x": 1}}) for i in range(95)])  # type: ignore[arg-type]
    assert coll.commands == [95]
