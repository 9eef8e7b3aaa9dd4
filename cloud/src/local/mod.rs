//! The local adapter: the embedded default, needing no cloud account.
