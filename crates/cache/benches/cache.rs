//! Cache benches (work in progress).
fn main() {}
