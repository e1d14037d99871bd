//! Balancers: pick one instance of a snapshot (pure, no I/O).
