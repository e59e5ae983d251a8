"""evaluate tasks: saved tabular models scored on a data file, with report plots, and compared."""
