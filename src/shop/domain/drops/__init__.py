"""Drops: scheduled flash sales of a set of options under one set of rules, with an optional
waiting room in front of them."""
