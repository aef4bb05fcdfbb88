"""Graph constructors: networks people train, built as SharedGraphs with readable layouts."""
