"""Show files: the schema, building a show into a live loop's parts, the show controller, the demo."""
