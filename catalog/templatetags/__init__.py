"""Template tags of the catalog's pages."""
