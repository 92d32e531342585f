"""Target-language vocabularies and their transplantation into a base model."""
