//! The ledgerlake control plane: the state store, the reconciler that
//! provisions and tears down tenants, and the operator CLI.

pub mod cli;
pub mod output;
pub mod platform;
pub mod reconciler;
pub mod store;
