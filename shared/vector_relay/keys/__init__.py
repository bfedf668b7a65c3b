"""The Pinecone API key: the workers' cache and its rotation."""
