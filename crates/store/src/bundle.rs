//! Batch and transaction Bundle processing (filled in by the bundle work).
