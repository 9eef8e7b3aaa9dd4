//! End-to-end tests of ledgerlake live beside this file, one test target per
//! flow that crosses the binaries (`cargo test --workspace` builds the
//! `tenant-job` binary they start). This library is empty on purpose.
