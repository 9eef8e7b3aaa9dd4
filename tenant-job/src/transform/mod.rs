//! The transformation: raw pages → raw dataset → transformed dataset.
