"""The catalog: a category tree, products with options and images, and how they are listed.

Plain values; the rules that need the whole tree (no cycles, what a delete may take with it)
live on ``CategoryTree`` so they can be checked against one consistent snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shop.domain.errors import Conflict, InvalidInput, NotFound
from shop.domain.limits import (
    MAX_CATEGORIES_PER_PRODUCT,
    MAX_CATEGORY_DEPTH,
    MAX_INT32,
    MAX_PRICE,
)

MAX_NAME_LENGTH = 200
MAX_PRODUCT_NAME_LENGTH = 300
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 20_000
# A single restock or initial stock; keeps ``stock_total`` (a 32-bit column) far from overflow.
MAX_UNITS_PER_CALL = 1_000_000
MAX_OPTIONS_PER_PRODUCT = 100
MAX_IMAGES_PER_PRODUCT = 50


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


@dataclass(frozen=True, slots=True)
class Option:
    """The unit that is bought. Its remaining stock belongs to the stock port, not to here."""

    id: int
    product_id: int
    name: str
    price: int
    stock_total: int
    position: int


@dataclass(frozen=True, slots=True)
class Image:
    id: int
    url: str
    position: int


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    name: str
    description: str
    price: int
    popularity: int
    created_at: datetime
    updated_at: datetime
    categories: tuple[Category, ...] = ()
    options: tuple[Option, ...] = ()
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, slots=True)
class ProductDetail:
    """A product as a customer sees it: with the units each option can still sell."""

    product: Product
    available: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class OptionOnSale:
    """An option with the units the stock port says can still be reserved."""

    option: Option
    available: int


@dataclass(frozen=True, slots=True)
class ProductSummary:
    """One row of a listing: enough to draw a product card."""

    id: int
    name: str
    price: int
    popularity: int
    created_at: datetime
    image_url: str | None


@dataclass(frozen=True, slots=True)
class NewOption:
    name: str
    stock: int
    price: int | None = None  # None: the product's price

    def __post_init__(self) -> None:
        check_name(self.name, "option name", MAX_NAME_LENGTH)
        if self.price is not None:
            check_price(self.price)
        if not 0 <= self.stock <= MAX_UNITS_PER_CALL:
            raise InvalidInput(
                f"an option's initial stock must be between 0 and {MAX_UNITS_PER_CALL}",
                extra={"option": self.name, "stock": self.stock},
            )


@dataclass(frozen=True, slots=True)
class NewProduct:
    name: str
    price: int
    category_ids: tuple[int, ...]
    options: tuple[NewOption, ...]
    description: str = ""
    images: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name, "product name", MAX_PRODUCT_NAME_LENGTH)
        check_price(self.price)
        check_description(self.description)
        check_category_links(self.category_ids)
        if not self.options:
            raise InvalidInput("a product needs at least one option: options are what is sold")
        if len(self.options) > MAX_OPTIONS_PER_PRODUCT:
            raise InvalidInput(f"a product has at most {MAX_OPTIONS_PER_PRODUCT} options")
        names = [option.name for option in self.options]
        if len(set(names)) != len(names):
            # The same clash as adding an option under a name the product has: 409.
            raise Conflict("option names must differ within a product")
        if len(self.images) > MAX_IMAGES_PER_PRODUCT:
            raise InvalidInput(f"a product has at most {MAX_IMAGES_PER_PRODUCT} images")
        for url in self.images:
            check_url(url)

    def price_of(self, option: NewOption) -> int:
        return self.price if option.price is None else option.price


@dataclass(frozen=True, slots=True)
class ProductChange:
    """A partial update; ``None`` keeps the current value. ``category_ids`` replaces the set."""

    name: str | None = None
    description: str | None = None
    price: int | None = None
    category_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.name is not None:
            check_name(self.name, "product name", MAX_PRODUCT_NAME_LENGTH)
        if self.price is not None:
            check_price(self.price)
        if self.description is not None:
            check_description(self.description)
        if self.category_ids is not None:
            check_category_links(self.category_ids)


class Sort(StrEnum):
    NEWEST = "newest"
    POPULAR = "popular"


@dataclass(frozen=True, slots=True)
class NewestAfter:
    """Keyset position in the newest-first order: (created_at, id), both descending."""

    created_at: datetime
    id: int


@dataclass(frozen=True, slots=True)
class PopularAfter:
    """Keyset position in the most-popular-first order: (popularity, id), both descending."""

    popularity: int
    id: int


Position = NewestAfter | PopularAfter


@dataclass(frozen=True, slots=True)
class ListingQuery:
    sort: Sort
    limit: int
    category_id: int | None = None
    after: Position | None = None


@dataclass(frozen=True, slots=True)
class PopularityWeights:
    """score = units × units ordered in live orders + wish × wishes made within the window."""

    units: int = 2
    wish: int = 1
    wish_window_seconds: float = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class CreatedProduct:
    """What registration wrote, so that stock can be put on sale once it is committed."""

    product_id: int
    option_stock: Sequence[tuple[int, int]] = field(default_factory=tuple)


def check_name(value: str, what: str, maximum: int) -> None:
    if not value.strip():
        raise InvalidInput(f"{what} must not be blank")
    if len(value) > maximum:
        raise InvalidInput(f"{what} is longer than {maximum} characters")


def check_price(price: int) -> None:
    if price < 0:
        raise InvalidInput("a price cannot be negative (prices are integer minor units)")
    if price > MAX_PRICE:
        raise InvalidInput(f"a price is at most {MAX_PRICE} minor units", extra={"price": price})


def check_description(description: str) -> None:
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(f"a description is at most {MAX_DESCRIPTION_LENGTH} characters")


def check_category_links(category_ids: Sequence[int]) -> None:
    if len(category_ids) > MAX_CATEGORIES_PER_PRODUCT:
        raise InvalidInput(
            f"a product belongs to at most {MAX_CATEGORIES_PER_PRODUCT} categories",
            extra={"category_ids": len(category_ids)},
        )


def check_url(url: str) -> None:
    if not url.startswith(("https://", "http://")) or len(url) > MAX_URL_LENGTH or " " in url:
        raise InvalidInput(
            f"an image URL must be an http(s) URL of at most {MAX_URL_LENGTH} characters",
            extra={"url": url[:100]},
        )


def check_units(units: int) -> None:
    if not 1 <= units <= MAX_UNITS_PER_CALL:
        raise InvalidInput(
            f"units must be between 1 and {MAX_UNITS_PER_CALL}", extra={"units": units}
        )


def check_stock_total(current_total: int, units: int) -> None:
    """Every unit ever put on sale is counted in ``stock_total``, a 32-bit column: a restock
    that would carry it past that is refused before any store is touched."""
    if current_total + units > MAX_INT32:
        raise InvalidInput(
            f"an option holds at most {MAX_INT32} units in total over its life; "
            f"{current_total} are counted already",
            extra={"stock_total": current_total, "units": units, "max_stock_total": MAX_INT32},
        )
