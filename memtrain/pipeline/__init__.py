"""The corpus pipeline: Wikipedia dump → passages → related passages → NER → masked memory episodes."""
