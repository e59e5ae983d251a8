"""preprocess tasks: a data file filtered, imputed, encoded, sampled and split into new files."""
