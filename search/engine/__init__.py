"""How trials run: the session, objective, trial loop, workers, storage, the trial record, outputs,
artifacts, dashboard notes, and the enqueued trials of a replay or a refit. Imports `search.study` only."""
