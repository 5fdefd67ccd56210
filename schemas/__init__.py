"""The JSON Schemas of reconciler\x27s file formats, shipped inside the wheel."""
