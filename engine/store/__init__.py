"""Models on this computer (the embedded one, the Hugging Face cache, converted and imported
folders) and on the Hub (catalog and downloads). Imports `engine.core` only to check folders.
"""
