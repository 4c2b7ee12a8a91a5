//! placeholder until the layer lands.
fn main() {}
