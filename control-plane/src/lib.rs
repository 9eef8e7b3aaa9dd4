//! The ledgerlake control plane: the state store, the reconciler that
//! provisions and tears down tenants, the HTTP service (Xero onboarding,
//! webhooks, the operator API) and the operator CLI.

pub mod cli;
pub mod clouds;
pub mod controller;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod platform;
pub mod reconciler;
pub mod runs;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod store;
pub mod tokens;
