//! Inputs the fuzz targets in `fuzz/` found, each kept as a test of the fixed behaviour.
