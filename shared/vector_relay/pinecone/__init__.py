"""The only folder that imports the Pinecone SDK (the lint fence in pyproject.toml)."""
