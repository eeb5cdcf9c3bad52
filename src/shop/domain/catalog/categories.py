"""The category tree: categories, the changes to them, and the rules that need the whole tree.

The rules that need the whole tree (no cycles, what a delete may take with it) live on
``CategoryTree`` so they can be checked against one consistent snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from shop.domain.catalog.checks import (
    MAX_NAME_LENGTH,
    check_name,
)
from shop.domain.errors import Conflict, InvalidInput, NotFound


@dataclass(frozen=True, slots=True)
class Category:
    id: int
    name: str
    parent_id: int | None
    position: int


@dataclass(frozen=True, slots=True)
class CategoryNode:
    """A category with its children, siblings ordered by (position, id)."""

    category: Category
    children: tuple[CategoryNode, ...]


class DeleteMode(StrEnum):
    """What deleting a non-empty category does with what it holds.

    ``REFUSE``: only an empty category (no children, no products) may go.
    ``CASCADE``: the whole subtree goes; its products are unlinked from it, never deleted
    (a product may sit in other categories and may have been ordered).
    ``MOVE``: children and products move to another category, then the category goes.
    """

    REFUSE = "refuse"
    CASCADE = "cascade"
    MOVE = "move"


class CategoryTree:
    """A snapshot of every category, for rules that depend on the shape of the tree."""

    def __init__(self, categories: Iterable[Category]) -> None:
        self._by_id = {category.id: category for category in categories}
        self._children: dict[int | None, list[Category]] = {}
        for category in self._by_id.values():
            self._children.setdefault(category.parent_id, []).append(category)
        for siblings in self._children.values():
            siblings.sort(key=lambda c: (c.position, c.id))

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._by_id

    def get(self, category_id: int) -> Category:
        try:
            return self._by_id[category_id]
        except KeyError:
            raise NotFound(f"category {category_id} does not exist") from None

    def roots(self) -> tuple[CategoryNode, ...]:
        return self._nodes(None)

    def _nodes(self, parent_id: int | None) -> tuple[CategoryNode, ...]:
        return tuple(
            CategoryNode(category, self._nodes(category.id))
            for category in self._children.get(parent_id, [])
        )

    def children_of(self, category_id: int) -> list[Category]:
        return list(self._children.get(category_id, []))

    def subtree(self, category_id: int) -> list[int]:
        """The category and all its descendants, parents before children."""
        self.get(category_id)
        found, frontier = [category_id], [category_id]
        while frontier:
            frontier = [child.id for parent in frontier for child in self._children.get(parent, [])]
            found.extend(frontier)
        return found

    def check_parent(self, parent_id: int | None) -> None:
        """A parent named in a request must exist: 422, since the path names something else."""
        if parent_id is not None and parent_id not in self._by_id:
            raise InvalidInput(
                f"parent category {parent_id} does not exist", extra={"parent_id": parent_id}
            )

    def check_move(self, category_id: int, new_parent_id: int | None) -> None:
        """Moving a category under itself or one of its descendants would cut the subtree off
        the tree and make it a cycle that recursive listings never leave."""
        self.get(category_id)
        self.check_parent(new_parent_id)
        if new_parent_id is not None and new_parent_id in self.subtree(category_id):
            raise Conflict(
                "a category cannot move under itself or one of its descendants",
                extra={"category_id": category_id, "parent_id": new_parent_id},
            )

    def check_delete(
        self,
        category_id: int,
        *,
        mode: DeleteMode,
        product_count: int,
        move_to: int | None = None,
    ) -> None:
        """Deleting never loses anything silently: a non-empty category needs a mode."""
        children = self.children_of(category_id)
        if mode is DeleteMode.REFUSE and (children or product_count):
            raise Conflict(
                "the category still has sub-categories or products; "
                "delete with ?cascade=true or ?move_to=<category id>",
                extra={"children": len(children), "products": product_count},
            )
        if mode is DeleteMode.MOVE:
            if move_to is None:
                raise InvalidInput("move_to names the category that receives the contents")
            if move_to not in self._by_id:
                raise InvalidInput(
                    f"category {move_to} (move_to) does not exist", extra={"move_to": move_to}
                )
            if move_to in self.subtree(category_id):
                raise Conflict(
                    "move_to must be outside the category being deleted",
                    extra={"move_to": move_to},
                )


@dataclass(frozen=True, slots=True)
class NewCategory:
    name: str
    parent_id: int | None = None
    position: int = 0

    def __post_init__(self) -> None:
        check_name(self.name, "category name", MAX_NAME_LENGTH)


@dataclass(frozen=True, slots=True)
class CategoryChange:
    """A partial update: ``None`` keeps a value, except ``parent_id`` which is only applied
    when ``move`` is set (so that ``parent_id=None`` can mean "make it a root")."""

    name: str | None = None
    position: int | None = None
    move: bool = False
    parent_id: int | None = None

    def __post_init__(self) -> None:
        if self.name is not None:
            check_name(self.name, "category name", MAX_NAME_LENGTH)

    def applied_to(self, category: Category) -> Category:
        return Category(
            id=category.id,
            name=category.name if self.name is None else self.name,
            parent_id=self.parent_id if self.move else category.parent_id,
            position=category.position if self.position is None else self.position,
        )
