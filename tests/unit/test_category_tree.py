"""Rules on the category tree: no cycles, and deletes that never lose anything silently."""

from __future__ import annotations

from typing import Any

import pytest

from shop.domain.catalog.model import (
    Category,
    CategoryChange,
    CategoryNode,
    CategoryTree,
    DeleteMode,
)
from shop.domain.catalog.services import delete_mode
from shop.domain.errors import Conflict, InvalidInput, NotFound
from shop.domain.limits import MAX_CATEGORY_DEPTH


@pytest.fixture
def tree() -> CategoryTree:
    #  1 Clothes ── 2 Shirts ── 3 Polos
    #            └─ 4 Trousers
    #  5 Books
    return CategoryTree(
        [
            Category(1, "Clothes", None, 0),
            Category(2, "Shirts", 1, 1),
            Category(3, "Polos", 2, 0),
            Category(4, "Trousers", 1, 0),
            Category(5, "Books", None, 1),
        ]
    )


def test_roots_and_children_come_in_position_order(tree: CategoryTree) -> None:
    def names(nodes: tuple[CategoryNode, ...]) -> list[Any]:
        return [(n.category.name, names(n.children)) for n in nodes]

    assert names(tree.roots()) == [
        ("Clothes", [("Trousers", []), ("Shirts", [("Polos", [])])]),
        ("Books", []),
    ]


def test_a_subtree_lists_parents_before_children(tree: CategoryTree) -> None:
    assert tree.subtree(1) == [1, 4, 2, 3]
    assert tree.subtree(3) == [3]


@pytest.mark.parametrize("new_parent", [1, 2, 3])
def test_a_category_cannot_move_under_itself_or_a_descendant(
    tree: CategoryTree, new_parent: int
) -> None:
    with pytest.raises(Conflict):
        tree.check_move(1, new_parent)


def test_moves_elsewhere_are_allowed(tree: CategoryTree) -> None:
    tree.check_move(2, 5)
    tree.check_move(3, None)
    tree.check_move(5, 3)


def test_moving_under_an_unknown_parent_is_not_found(tree: CategoryTree) -> None:
    with pytest.raises(NotFound):
        tree.check_move(2, 99)
    with pytest.raises(NotFound):
        tree.check_move(99, 1)


def test_a_non_empty_category_needs_a_delete_mode(tree: CategoryTree) -> None:
    with pytest.raises(Conflict) as caught:
        tree.check_delete(2, mode=DeleteMode.REFUSE, product_count=0)
    assert caught.value.extra == {"children": 1, "products": 0}
    with pytest.raises(Conflict):
        tree.check_delete(5, mode=DeleteMode.REFUSE, product_count=3)
    tree.check_delete(5, mode=DeleteMode.REFUSE, product_count=0)
    tree.check_delete(1, mode=DeleteMode.CASCADE, product_count=10)


def test_contents_cannot_move_into_the_deleted_subtree(tree: CategoryTree) -> None:
    with pytest.raises(Conflict):
        tree.check_delete(1, mode=DeleteMode.MOVE, product_count=0, move_to=3)
    with pytest.raises(NotFound):
        tree.check_delete(1, mode=DeleteMode.MOVE, product_count=0, move_to=99)
    tree.check_delete(1, mode=DeleteMode.MOVE, product_count=0, move_to=5)


def test_the_request_chooses_one_delete_mode_and_move_to_wins() -> None:
    assert delete_mode(cascade=False, move_to=None) is DeleteMode.REFUSE
    assert delete_mode(cascade=True, move_to=None) is DeleteMode.CASCADE
    assert delete_mode(cascade=False, move_to=3) is DeleteMode.MOVE
    # Moved out first, the category is empty: cascading it takes nothing more.
    assert delete_mode(cascade=True, move_to=3) is DeleteMode.MOVE


def test_a_change_keeps_the_parent_unless_it_moves() -> None:
    category = Category(2, "Shirts", 1, 1)
    assert CategoryChange(name="Tops").applied_to(category) == Category(2, "Tops", 1, 1)
    assert CategoryChange(move=True, parent_id=None).applied_to(category).parent_id is None


def _chain(levels: int) -> CategoryTree:
    return CategoryTree(
        Category(n, f"level {n}", n - 1 if n > 1 else None, 0) for n in range(1, levels + 1)
    )


def test_a_chain_may_grow_to_the_depth_cap_and_no_further() -> None:
    tree = _chain(MAX_CATEGORY_DEPTH - 1)
    tree.check_parent(MAX_CATEGORY_DEPTH - 1)  # the 32nd level fits
    deeper = _chain(MAX_CATEGORY_DEPTH)
    with pytest.raises(InvalidInput, match="levels deep"):
        deeper.check_parent(MAX_CATEGORY_DEPTH)


def test_a_move_counts_the_height_of_the_subtree_it_carries() -> None:
    chain = [Category(n, f"c{n}", n - 1 if n > 1 else None, 0) for n in range(1, 31)]
    #  a two-level subtree (100 ── 101) beside a 30-level chain: under level 30 it would
    #  reach 32 (fits), under a 31st level it would reach 33.
    subtree = [Category(100, "top", None, 1), Category(101, "child", 100, 0)]
    tree = CategoryTree([*chain, *subtree])
    tree.check_move(100, 30)
    longer = CategoryTree([*chain, Category(31, "c31", 30, 0), *subtree])
    with pytest.raises(InvalidInput, match="levels deep"):
        longer.check_move(100, 31)


def test_a_deep_chain_lists_without_recursion_down_to_the_cap() -> None:
    roots = _chain(5_000).roots()
    depth, node = 1, roots[0]
    while node.children:
        depth, node = depth + 1, node.children[0]
    assert depth == MAX_CATEGORY_DEPTH
