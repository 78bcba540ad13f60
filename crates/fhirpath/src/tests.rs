//! Unit tests of the engine on the R4 idioms.
