//! What can be wrong with a balancer's configuration: core's [`BuildError`], naming the field
//! at fault as a config path (`targets[1].weight: must be >= 0`).

pub use portcullis_core::BuildError;
