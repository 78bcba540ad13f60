//! C-CDA documents in and out (being written).
