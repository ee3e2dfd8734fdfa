"""Files shipped inside the package: the embedded model, templates, icons. Found with importlib.resources."""
