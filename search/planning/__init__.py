"""search.auto's planning: the budget, the machine's step times, the staged plan, the clock that holds it, the
choice of what to ship and the model card."""
