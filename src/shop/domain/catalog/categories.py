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
from shop.domain.limits import MAX_CATEGORY_DEPTH


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
        """The nested tree, built bottom-up without recursion, ``MAX_CATEGORY_DEPTH`` levels
        deep. Writes cannot go deeper; a deeper chain written before the cap (or by hand) is
        cut from the nested listing rather than making it fail for everyone: its categories
        still exist and list their products by id."""
        levels: list[list[Category]] = []
        frontier = list(self._children.get(None, []))
        while frontier and len(levels) < MAX_CATEGORY_DEPTH:
            levels.append(frontier)
            frontier = [child for c in frontier for child in self._children.get(c.id, [])]
        built: dict[int, CategoryNode] = {}
        for level in reversed(levels):
            for category in level:
                children = tuple(
                    built.pop(c.id) for c in self._children.get(category.id, []) if c.id in built
                )
                built[category.id] = CategoryNode(category, children)
        return tuple(built[c.id] for c in self._children.get(None, []))

    def depth_of(self, category_id: int) -> int:
        """1 for a top-level category, 2 for its children, and so on."""
        depth, seen = 0, set()
        current: int | None = category_id
        while current is not None and current in self._by_id and current not in seen:
            seen.add(current)
            depth += 1
            current = self._by_id[current].parent_id
        return depth

    def height_of(self, category_id: int) -> int:
        """Levels in the subtree under (and including) the category."""
        height, frontier = 0, [category_id]
        while frontier:
            height += 1
            frontier = [child.id for parent in frontier for child in self._children.get(parent, [])]
        return height

    def check_depth(self, parent_id: int | None, *, height: int = 1) -> None:
        """A subtree of ``height`` levels placed under ``parent_id`` must stay within
        ``MAX_CATEGORY_DEPTH``: the tree is served as nested JSON, and a deeper chain is no
        navigation anyone can use."""
        depth = (0 if parent_id is None else self.depth_of(parent_id)) + height
        if depth > MAX_CATEGORY_DEPTH:
            raise InvalidInput(
                f"categories nest at most {MAX_CATEGORY_DEPTH} levels deep",
                extra={"parent_id": parent_id, "depth": depth, "max_depth": MAX_CATEGORY_DEPTH},
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
        """A parent named in a request must exist: 404, like any id the request names."""
        if parent_id is not None and parent_id not in self._by_id:
            raise NotFound(
                f"parent category {parent_id} does not exist", extra={"parent_id": parent_id}
            )
        self.check_depth(parent_id)

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
        self.check_depth(new_parent_id, height=self.height_of(category_id))

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
                raise NotFound(
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
