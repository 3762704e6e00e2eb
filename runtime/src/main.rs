//! `mio`: the headless command line of MIO Desktop.

fn main() {}
