"""The book: what every chapter runs first, tables, figures, computed readings, the paper's numbers and the main job
that executes the chapters."""
