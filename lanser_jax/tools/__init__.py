"""Research tools: sweeps, baselines, representation analysis, prompt search, labelling comparison."""
