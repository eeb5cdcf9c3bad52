"""The catalog: category tree, products with options and images, listings and popularity."""
