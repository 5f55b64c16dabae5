"""The preference data pipeline: sources → formats → tokenize → collate."""
