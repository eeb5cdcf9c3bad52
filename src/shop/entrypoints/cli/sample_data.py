"""A realistic sample catalog for demos and benchmarks (``shop seed``).

Pure and deterministic for a given ``random.Random`` seed, so a benchmark can be re-run on the
same data. The shape imitates a general store: a few departments, sub-categories two levels
deep, products in one or two categories (some in a parent, most in a leaf), one to four
options with sizes, colours or capacities, prices in the usual x.90 steps, creation times
spread over a year (so "newest" is not just id order), and some options already sold out.
Demo data, not a rule: it lives with the command that seeds it, outside the domain.
"""

from __future__ import annotations

import datetime
import math
import random

from shop.domain.catalog.bulk import SampleCatalog, SampleCategory, SampleOption, SampleProduct

DEPARTMENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    # department: (sub-categories, product nouns, option sets)
    "Clothing": (
        ("Men", "Women", "Kids", "Outerwear", "Basics", "Sportswear"),
        ("T-shirt", "Shirt", "Hoodie", "Jeans", "Jacket", "Dress", "Sweater", "Shorts"),
        (("S", "M", "L", "XL"), ("Black", "White", "Navy", "Olive")),
    ),
    "Shoes": (
        ("Sneakers", "Boots", "Sandals", "Running", "Formal"),
        ("Sneaker", "Boot", "Loafer", "Runner", "Sandal", "Trainer"),
        (("40", "41", "42", "43", "44"), ("Black", "White", "Brown")),
    ),
    "Electronics": (
        ("Phones", "Laptops", "Audio", "Cameras", "Accessories"),
        ("Phone", "Laptop", "Headphones", "Speaker", "Camera", "Charger", "Tablet"),
        (("64 GB", "128 GB", "256 GB", "512 GB"), ("Graphite", "Silver")),
    ),
    "Home": (
        ("Kitchen", "Bedding", "Lighting", "Storage", "Decor"),
        ("Mug", "Pan", "Lamp", "Pillow", "Blanket", "Vase", "Shelf", "Knife set"),
        (("Small", "Medium", "Large"), ("Single", "Pack of 2", "Pack of 4")),
    ),
    "Books": (
        ("Fiction", "Science", "History", "Children", "Cooking"),
        ("Novel", "Guide", "Atlas", "Cookbook", "Biography", "Handbook"),
        (("Paperback", "Hardcover", "E-book"),),
    ),
    "Sports": (
        ("Cycling", "Fitness", "Outdoor", "Team sports", "Water sports"),
        ("Helmet", "Yoga mat", "Tent", "Ball", "Bottle", "Backpack", "Racket"),
        (("Standard",), ("Red", "Blue", "Black")),
    ),
    "Beauty": (
        ("Skincare", "Haircare", "Fragrance", "Makeup"),
        ("Serum", "Shampoo", "Perfume", "Lipstick", "Cream", "Cleanser"),
        (("30 ml", "50 ml", "100 ml"),),
    ),
    "Toys": (
        ("Puzzles", "Building", "Dolls", "Games", "Outdoor play"),
        ("Puzzle", "Building set", "Doll", "Board game", "Kite", "Robot"),
        (("Standard",), ("Ages 3+", "Ages 8+")),
    ),
}
ADJECTIVES = (
    "Classic", "Essential", "Premium", "Everyday", "Vintage", "Modern", "Compact", "Deluxe",
    "Lightweight", "Organic", "Urban", "Limited", "Signature", "Pro", "Eco", "Heritage",
)  # fmt: skip
MATERIALS = (
    "Cotton", "Linen", "Leather", "Wool", "Bamboo", "Steel", "Oak", "Ceramic", "Recycled",
    "Merino", "Carbon", "Glass", "Canvas", "Suede", "Silk", "Denim",
)  # fmt: skip
DEPTH = 3  # department > sub-category > sub-sub-category


def sample_categories(count: int, rng: random.Random) -> list[SampleCategory]:
    """Departments first, then sub-categories under random earlier categories of depth < 3."""
    departments = list(DEPARTMENTS)
    top_level = min(len(departments), max(1, count // 8))
    categories: list[SampleCategory] = []
    department_of: list[str] = []
    open_parents: list[int] = []  # categories that may still take children (depth < DEPTH)
    depth: list[int] = []
    children: dict[int, int] = {}
    for key in range(count):
        if key < top_level:
            categories.append(SampleCategory(key, departments[key], None, key))
            department_of.append(departments[key])
            depth.append(1)
            open_parents.append(key)
            continue
        parent = rng.choice(open_parents)
        subs = DEPARTMENTS[department_of[parent]][0]
        siblings = children.get(parent, 0)
        children[parent] = siblings + 1
        name = subs[siblings % len(subs)]
        if siblings >= len(subs):
            name = f"{name} {siblings // len(subs) + 1}"
        categories.append(SampleCategory(key, name, parent, siblings))
        department_of.append(department_of[parent])
        depth.append(depth[parent] + 1)
        if depth[key] < DEPTH:
            open_parents.append(key)
    return categories


def _price(rng: random.Random) -> int:
    """Log-uniform between 4.90 and 1,999.90, ending in .90 (minor units)."""
    major = math.exp(rng.uniform(math.log(4), math.log(1_999)))
    return int(major) * 100 + 90


def sample_catalog(
    *,
    products: int,
    categories: int,
    rng: random.Random,
    now: datetime.datetime,
    image_host: str = "https://images.example.com",
) -> SampleCatalog:
    if products < 0 or categories < 1:
        raise ValueError("a sample needs at least one category and no negative product count")
    tree = sample_categories(categories, rng)
    department_of: list[str] = []
    for category in tree:
        parent = category.parent_key
        department_of.append(category.name if parent is None else department_of[parent])
    has_children = {c.parent_key for c in tree if c.parent_key is not None}
    leaves = [c.key for c in tree if c.key not in has_children]
    year = 365 * 24 * 3600
    items: list[SampleProduct] = []
    for n in range(products):
        # Most products sit in a leaf; some also in a second category anywhere in the tree.
        home = rng.choice(leaves)
        keys: tuple[int, ...] = (home,)
        if rng.random() < 0.25:
            other = rng.randrange(len(tree))
            if other != home:
                keys = (home, other)
        department = department_of[home]
        _, nouns, option_sets = DEPARTMENTS[department]
        noun = rng.choice(nouns)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(MATERIALS)} {noun}"
        price = _price(rng)
        choices = rng.choice(option_sets)
        count = rng.randint(1, min(4, len(choices)))
        options = tuple(
            SampleOption(
                name=choice,
                price=price + (position * 500 if rng.random() < 0.3 else 0),
                stock=0 if rng.random() < 0.1 else rng.randint(1, 200),
            )
            for position, choice in enumerate(choices[:count])
        )
        token = f"{rng.getrandbits(48):012x}"
        images = tuple(f"{image_host}/{token}/{i}.jpg" for i in range(rng.randint(1, 3)))
        items.append(
            SampleProduct(
                name=name,
                description=f"{name}, from our {department.lower()} range (#{n + 1}).",
                price=price,
                created_at=now - datetime.timedelta(microseconds=rng.randrange(year * 1_000_000)),
                category_keys=keys,
                options=options,
                images=images,
            )
        )
    return SampleCatalog(categories=tree, products=items)
