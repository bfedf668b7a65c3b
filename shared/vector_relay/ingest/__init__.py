"""The ingest service: plan a batch into Pinecone requests, admit them through the version guard, run them."""
