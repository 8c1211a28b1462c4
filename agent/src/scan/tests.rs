//! Integration-style tests of the scan.
