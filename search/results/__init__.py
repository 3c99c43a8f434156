"""What a study leaves: the report, the refit table, ensembles, exported checkpoints, test-split scores,
the end-of-search summary and the search-efficiency comparison. Imports `search.engine` and `search.study`."""
